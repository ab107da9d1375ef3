/// The VMM command a container's process execs at `start`: `swiftlet hvt` for a Solo5 unikernel
/// (solo5-hvt's command line), `swiftlet run` for Linux, from the guest and its network.
public struct VMMCommand: Sendable, Equatable {
    /// The guest's network interface: the tap in the container's network namespace and the
    /// address the guest takes (the namespace's veth's MAC, address and gateway, as CNI set them).
    public struct Network: Sendable, Equatable {
        public var tap: String
        public var mac: String
        /// `10.4.0.7/16`, and the gateway; nil when the namespace has none.
        public var address: String?
        public var gateway: String?
        public init(tap: String, mac: String, address: String?, gateway: String?) {
            self.tap = tap; self.mac = mac; self.address = address; self.gateway = gateway
        }
    }

    /// argv after the program: `hvt …` or `run …`.
    public var arguments: [String]

    /// `jail`: the directory of the VMM's own jail (docs/jail.md: an empty root of its own, the
    /// drop to the `swiftlet` user), entered once the guest's files and taps are open.
    public init(_ guest: GuestSpec, network: Network?, jail: String? = nil) throws(OCIError) {
        switch guest.kind {
        case .hvt:
            var a = ["hvt", "--mem=\(guest.memoryMiB)"] + (jail.map { ["--jail=\($0)"] } ?? [])
            for block in guest.blocks { a.append("--block:\(block.name)=\(block.path)") }
            var guestArguments = guest.arguments
            if let network {
                a += ["--net:\(guest.netDeviceName)=\(network.tap)", "--net-mac:\(guest.netDeviceName)=\(network.mac)"]
                // MirageOS's own options (what urunc passes too): the interface named `service`
                // takes --ipv4/--ipv4-gateway, another one --NAME-ipv4/--NAME-ipv4-gateway.
                let option = guest.netDeviceName == "service" ? "--ipv4" : "--\(guest.netDeviceName)-ipv4"
                var ip: [String] = []
                if let address = network.address { ip.append("\(option)=\(address)") }
                if let gateway = network.gateway { ip.append("\(option)-gateway=\(gateway)") }
                guestArguments = ip + guestArguments
            }
            a += ["--", guest.kernel] + guestArguments
            arguments = a
        case .linux:
            var a = ["run", "--kernel", guest.kernel, "--memory", "\(guest.memoryMiB)M"] + (jail.map { ["--jail", $0] } ?? [])
            if let initrd = guest.initrd { a += ["--initrd", initrd] }
            var cmdline = guest.arguments.first ?? "console=ttyS0 reboot=k panic=-1"
            for block in guest.blocks {
                guard !block.path.contains(",") else { throw OCIError("block device \(block.path): a path with ',' cannot be passed to --disk") }
                a += ["--disk", block.path]
            }
            if let network {
                a += ["--net", "tap=\(network.tap),mac=\(network.mac)"]
                // The kernel's own configuration of its first interface (ip= of
                // Documentation/admin-guide/nfs/nfsroot.rst): client::gateway:netmask::eth0:off.
                if let address = network.address, let (ip, mask) = Self.split(address) {
                    cmdline += " ip=\(ip)::\(network.gateway ?? ""):\(mask)::eth0:off"
                }
            }
            a += ["--cmdline", cmdline]
            arguments = a
        }
    }

    /// `10.4.0.7/16` → ("10.4.0.7", "255.255.0.0").
    static func split(_ cidr: String) -> (String, String)? {
        let parts = cidr.split(separator: "/")
        guard parts.count == 2, let bits = Int(parts[1]), (0...32).contains(bits) else { return nil }
        let mask: UInt32 = bits == 0 ? 0 : ~UInt32(0) << (32 - bits)
        return (String(parts[0]), [24, 16, 8, 0].map { String((mask >> UInt32($0)) & 0xFF) }.joined(separator: "."))
    }
}
