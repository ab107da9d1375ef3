import Foundation
import Testing
import VMSpec

/// The one MAC grammar, table-driven.
@Suite struct MACAddressTests {
    @Test(arguments: [
        ("02:00:5e:10:00:ff", [2, 0, 0x5E, 0x10, 0, 0xFF] as [UInt8]?),
        ("0A:0B:CC:DD:EE:FF", [10, 11, 0xCC, 0xDD, 0xEE, 0xFF]),
        ("02-00-5E-10-00-01", nil),                              // the API document's form only
        ("2:0:0:0:0:1", nil),
        ("02:00:5e:10:00", nil),
        ("02:00:5e:10:00:1ff", nil),
        ("zz:00:5e:10:00:01", nil),
        ("02:00:5e:10:00:", nil),
        ("02:00-5e:10:00:01", nil),                              // mixed separators
        ("+2:00:5e:10:00:01", nil),                              // UInt8(radix:) would take a sign
        ("", nil),
    ])
    func parsing(_ text: String, _ bytes: [UInt8]?) {
        #expect(MACAddress(text)?.bytes == bytes, "\(text)")
    }

    @Test func unicastCanonicalFormAndRandom() {
        #expect(MACAddress("01:00:5e:00:00:01")?.isUnicast == false)
        #expect(MACAddress("02:00:5e:00:00:01")?.isUnicast == true)
        #expect(MACAddress("02:0A:5e:00:00:01")?.description == "02:0a:5e:00:00:01")
        #expect(MACAddress(bytes: [1, 2, 3]) == nil)
        for _ in 0..<16 {
            let mac = MACAddress.random()
            #expect(mac.bytes[0] & 0x03 == 0x02, "locally administered unicast")
            #expect(MACAddress(mac.description) == mac)
        }
    }
}

/// The one memory-size grammar.
@Suite struct MemorySizeTests {
    @Test(arguments: [
        ("256M", UInt64(256) << 20 as UInt64?), ("256m", 256 << 20), ("2G", 2 << 30), ("131072K", 128 << 20),
        ("64", 64 << 20), (" 8M ", 8 << 20), ("1k", 1024),
        ("0", nil), ("0M", nil), ("", nil), ("M", nil), ("2GiB", nil), ("2Gi", nil), ("12MB", nil), ("-1", nil),
        ("+4", nil), ("1.5G", nil), ("17179869184G", nil), ("99999999999999999999", nil), ("2T", nil),
    ])
    func parsing(_ text: String, _ bytes: UInt64?) {
        #expect(MemorySize.bytes(text) == bytes, "\(text)")
    }

    @Test(arguments: [
        ("0", MemorySize.Failure.zero), ("0M", .zero), ("", .notANumber), ("M", .notANumber), ("-1", .notANumber),
        ("+4", .notANumber), ("1.5G", .notANumber), ("256MB", .unknownUnit("MB")), ("256MiB", .unknownUnit("MiB")),
        ("100T", .unknownUnit("T")), ("17179869184G", .tooLarge), ("99999999999999999999", .tooLarge),
    ])
    func reasons(_ text: String, _ failure: MemorySize.Failure) {
        #expect(MemorySize.parse(text) == .failure(failure), "\(text)")
    }
}

/// The `k=v,…` option grammar and the device specs written in it.
@Suite struct OptionStringTests {
    @Test func grammar() {
        let o = OptionString("/d.img,readonly,id=a=b", positional: true)
        #expect(o?.positional == "/d.img" && o?.flags == ["readonly"] && o?.pairs == ["id": "a=b"])
        #expect(OptionString("tap=t0,mac=02:00:00:00:00:01")?.pairs.count == 2)
        #expect(OptionString("tap=t0,,mac=x") == nil)          // empty item
        #expect(OptionString("tap=t0,tap=t1") == nil)          // key twice
        #expect(OptionString("=x") == nil)
        #expect(OptionString("tap=") == nil)
        #expect(OptionString(",readonly", positional: true) == nil)
        #expect(OptionString("/d,ro,ro", positional: true) == nil)
        #expect(OptionString("a")?.flags == ["a"])
    }

    @Test(arguments: [
        ("/d.img", DiskSpec(path: "/d.img") as DiskSpec?),
        ("/d.img,readonly", DiskSpec(path: "/d.img", readOnly: true)),
        ("/d.img,ro,root,id=storage", DiskSpec(path: "/d.img", readOnly: true, root: true, id: "storage")),
        ("/d.img,id=my-disk_1", DiskSpec(path: "/d.img", id: "my-disk_1")),
        ("/d.img,id=a.b", nil),                                    // the API's ids: no dots
        ("/d.img,readonly,ro", nil),
        ("/d.img,rw", nil),
        ("/d.img,id=", nil),
        (",readonly", nil),
        ("", nil),
    ])
    func disks(_ text: String, _ spec: DiskSpec?) {
        #expect(DiskSpec(text) == spec, "\(text)")
        if let spec { #expect(DiskSpec(spec.text) == spec) }
    }

    @Test(arguments: [
        ("tap=tap0", NetSpec(tap: "tap0") as NetSpec?),
        ("tap=tap0,mac=02:00:00:00:00:01,id=eth0", NetSpec(tap: "tap0", mac: MACAddress("02:00:00:00:00:01"), id: "eth0")),
        ("mac=02:00:00:00:00:01,tap=t", NetSpec(tap: "t", mac: MACAddress("02:00:00:00:00:01"))),
        ("tap=t0,mac=01:00:00:00:00:01", nil),                    // multicast
        ("tap=t0,mac=02:00:00:00:00", nil),
        ("tap=0123456789abcdef", nil),                            // 16 characters
        ("tap=a/b", nil), ("tap=a b", nil), ("tap=", nil), ("mac=02:00:00:00:00:01", nil),
        ("tap=t0,speed=10", nil), ("tap=t0,promisc", nil),
    ])
    func networks(_ text: String, _ spec: NetSpec?) {
        #expect(NetSpec(text) == spec, "\(text)")
        if let spec { #expect(NetSpec(spec.text) == spec) }
    }

    @Test(arguments: [
        ("cid=3,uds=/v.sock", VsockSpec(cid: 3, uds: "/v.sock") as VsockSpec?),
        ("uds=/v.sock,cid=4294967294", VsockSpec(cid: 4_294_967_294, uds: "/v.sock")),
        ("cid=2,uds=/v", nil), ("cid=4294967295,uds=/v", nil), ("cid=-3,uds=/v", nil), ("cid=3", nil), ("uds=/v", nil),
        ("cid=3,uds=/v,extra=1", nil),
    ])
    func vsocks(_ text: String, _ spec: VsockSpec?) {
        #expect(VsockSpec(text) == spec, "\(text)")
        if let spec { #expect(VsockSpec(spec.text) == spec) }
    }
}

/// Firecracker's schema, written once: what swiftletd encodes, the VM process decodes the same.
@Suite struct FirecrackerSchemaTests {
    func roundTrip<T: Codable & Equatable>(_ value: T) throws -> T {
        try JSONDecoder().decode(T.self, from: JSONEncoder().encode(value))
    }

    @Test func requestBodiesRoundTrip() throws {
        let boot = FirecrackerConfig.BootSource(kernelImagePath: "/k", initrdPath: nil, bootArgs: "console=ttyS0")
        #expect(try roundTrip(boot) == boot)
        let machine = FirecrackerConfig.MachineConfig(vcpuCount: 2, memSizeMib: 256)
        #expect(try roundTrip(machine) == machine)
        let drive = FirecrackerConfig.Drive(driveId: "rootfs", pathOnHost: "/r.img", isRootDevice: true, isReadOnly: true)
        #expect(try roundTrip(drive) == drive)
        let nic = FirecrackerConfig.NetworkInterface(ifaceId: "eth0", hostDevName: "tap0", guestMac: MACAddress("02:00:00:00:00:01"))
        #expect(try roundTrip(nic) == nic)
        #expect(String(decoding: try JSONEncoder().encode(nic), as: UTF8.self).contains(#""guest_mac":"02:00:00:00:00:01""#))
        let vsock = FirecrackerConfig.Vsock(guestCid: 4_294_967_294, udsPath: "/v.sock")
        #expect(try roundTrip(vsock) == vsock)
    }

    @Test func decodingValidates() {
        func fails<T: Decodable>(_ type: T.Type, _ json: String) -> Bool {
            (try? JSONDecoder().decode(T.self, from: Data(json.utf8))) == nil
        }
        #expect(fails(FirecrackerConfig.Vsock.self, #"{"guest_cid": 4294967295, "uds_path": "/v"}"#))
        #expect(fails(FirecrackerConfig.Vsock.self, #"{"guest_cid": 2, "uds_path": "/v"}"#))
        #expect(fails(FirecrackerConfig.NetworkInterface.self, #"{"iface_id": "e", "host_dev_name": "t", "guest_mac": "01:00:00:00:00:01"}"#))
        #expect(fails(FirecrackerConfig.Drive.self, #"{"drive_id": "d", "path_on_host": "/x", "is_root_device": false, "colour": 1}"#))
        #expect(fails(FirecrackerConfig.Drive.self, #"{"drive_id": "d", "path_on_host": "/x\u0000y", "is_root_device": false}"#))
        #expect(!fails(FirecrackerConfig.Drive.self, #"{"drive_id": "d", "path_on_host": "/x", "is_root_device": false}"#))
    }
}

/// The one escaping of text from files, requests and guests in messages.
@Suite struct PrintableTests {
    @Test func controlAndFormatCharactersAreEscaped() {
        #expect("eth0".printable == "eth0")
        #expect("caf\u{E9} \u{1F600}".printable == "caf\u{E9} \u{1F600}")
        #expect("a\u{1B}[2Jb".printable == #"a\x1B[2Jb"#)
        #expect("\u{0}\t\n\r\u{7F}".printable == #"\x00\x09\x0A\x0D\x7F"#)
        #expect("\u{9B}31m\u{202E}\u{2028}".printable == #"\u{9B}31m\u{202E}\u{2028}"#)
        #expect(#"a\x1Bb"#.printable == #"a\\x1Bb"#, "a backslash is escaped, so an escape in the text is not taken for one")
    }
}

@Suite struct ExtensionSpecTests {
    @Test func programArgumentsLineAndTimeout() throws {
        let spec = try #require(ExtensionSpec("/usr/bin/dev.py,fast,verbose,irq=5,timeout_ms=250"))
        #expect(spec == ExtensionSpec(program: "/usr/bin/dev.py", arguments: ["fast", "verbose"], irq: 5, timeoutMilliseconds: 250))
        #expect(ExtensionSpec(spec.text) == spec)
        #expect(ExtensionSpec("./x") == ExtensionSpec(program: "./x"))
        #expect(spec.name == "dev.py")
    }

    @Test func aSocketTheExtensionConnectsTo() throws {
        let spec = try #require(ExtensionSpec("listen=/run/dev.sock,irq=7"))
        #expect(spec == ExtensionSpec(origin: .socket("/run/dev.sock"), irq: 7))
        #expect(spec.text == "listen=/run/dev.sock,irq=7")
        #expect(ExtensionSpec(spec.text) == spec)
        #expect(spec.name == "/run/dev.sock")
        for text in ["listen=", "listen=relative.sock", "listen=/a,extra", "listen=/a,listen=/b", "listen=/a,cid=3"] {
            #expect(ExtensionSpec(text) == nil, "\(text)")
        }
    }

    @Test func outOfRangeOrUnknownIsRefused() {
        for text in ["", ",a", "x,irq=4", "x,irq=24", "x,irq=a", "x,timeout_ms=0", "x,timeout_ms=60001", "x,cid=3", "x,a,a", "x,,a"] {
            #expect(ExtensionSpec(text) == nil, "\(text)")
        }
    }
}
