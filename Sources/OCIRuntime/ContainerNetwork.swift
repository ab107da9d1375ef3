import FoundationEssentials
import Host

/// The guest's network in the network namespace CNI made for the container (urunc's "dynamic"
/// mode, as Kata does it): CNI gave the namespace a veth (`eth0`) with an address; the runtime
/// adds a tap beside it and mirrors every frame between the two with tc (an ingress qdisc and a
/// `mirred egress redirect` filter each way), and the guest takes the veth's MAC and address, so
/// what CNI set up reaches the VM unchanged. iproute2's `ip` and `tc` do the work inside the
/// namespace (`HostProcess.output(of:networkNamespace:)`).
public enum ContainerNetwork {
    /// The tap made in each container's namespace (one VM per namespace).
    public static let tapName = "tap0_swiftlet"

    /// An interface of the namespace, as `ip -j addr` and `ip -j route` tell it.
    public struct Interface: Sendable, Equatable {
        public var name: String
        public var mac: String
        public var mtu: Int
        /// `10.88.0.7/16`
        public var address: String
        public var gateway: String?
    }

    /// Runs a command in the namespace; the status and output (tests give their own).
    public typealias Runner = (_ program: String, _ arguments: [String]) throws(OCIError) -> (status: Int32, output: String)

    /// The runner of `ip` and `tc` in the namespace at `path`.
    public static func runner(namespace path: String) -> Runner {
        { program, arguments throws(OCIError) in
            let found = ["/usr/sbin/", "/sbin/", "/usr/bin/", "/bin/"].map { $0 + program }.first(where: FileSystem.isExecutable)
            guard let found else { throw OCIError("\(program) (iproute2) is not installed: apt-get install iproute2") }
            do { return try HostProcess.output(of: found, arguments, networkNamespace: path) } catch {
                throw OCIError("network namespace \(path): \(error)")
            }
        }
    }

    /// The namespace's interface for the guest: the first one, other than loopback and our tap,
    /// with an IPv4 address; nil when there is none (ctr without CNI: only lo).
    public static func inspect(_ run: Runner) throws(OCIError) -> Interface? {
        let addresses = try run("ip", ["-j", "address", "show"])
        guard addresses.status == 0 else { throw OCIError("ip address show: \(addresses.output.split(separator: "\n").first ?? "")") }
        struct Link: Decodable {
            struct Address: Decodable { var family: String?; var local: String?; var prefixlen: Int? }
            var ifname: String
            var address: String?
            var mtu: Int?
            var link_type: String?
            var addr_info: [Address]?
        }
        struct Route: Decodable { var dst: String?; var gateway: String?; var dev: String? }
        guard let links = try? JSONDecoder().decode([Link].self, from: Data(addresses.output.utf8)) else {
            throw OCIError("ip -j address show: unreadable output")
        }
        for link in links where link.link_type != "loopback" && link.ifname != tapName {
            guard let inet = link.addr_info?.first(where: { $0.family == "inet" }), let local = inet.local, let prefix = inet.prefixlen,
                  let mac = link.address else { continue }
            let routes = try run("ip", ["-j", "route", "show", "default"])
            let gateway = (try? JSONDecoder().decode([Route].self, from: Data(routes.output.utf8)))?
                .first { $0.dev == nil || $0.dev == link.ifname }?.gateway
            return Interface(name: link.ifname, mac: mac, mtu: link.mtu ?? 1500, address: "\(local)/\(prefix)", gateway: gateway)
        }
        return nil
    }

    /// Makes the tap and the mirroring between it and `interface`; the guest's network.
    public static func attach(_ interface: Interface, _ run: Runner) throws(OCIError) -> VMMCommand.Network {
        let steps: [(String, [String])] = [
            ("ip", ["tuntap", "add", "dev", tapName, "mode", "tap"]),
            ("ip", ["link", "set", "dev", tapName, "mtu", "\(interface.mtu)", "up"]),
            ("tc", ["qdisc", "add", "dev", interface.name, "ingress"]),
            ("tc", ["filter", "add", "dev", interface.name, "parent", "ffff:", "protocol", "all", "u32", "match", "u32", "0", "0",
                    "action", "mirred", "egress", "redirect", "dev", tapName]),
            ("tc", ["qdisc", "add", "dev", tapName, "ingress"]),
            ("tc", ["filter", "add", "dev", tapName, "parent", "ffff:", "protocol", "all", "u32", "match", "u32", "0", "0",
                    "action", "mirred", "egress", "redirect", "dev", interface.name]),
        ]
        for (program, arguments) in steps {
            let result = try run(program, arguments)
            guard result.status == 0 else {
                detach(interface.name, run)
                throw OCIError("\(program) \(arguments.joined(separator: " ")): \(result.output.split(separator: "\n").first ?? "failed")")
            }
        }
        return VMMCommand.Network(tap: tapName, mac: interface.mac, address: interface.address, gateway: interface.gateway)
    }

    /// Removes the tap and the mirroring (the namespace may be gone already: nothing to do then).
    public static func detach(_ interfaceName: String, _ run: Runner) {
        _ = try? run("tc", ["qdisc", "del", "dev", interfaceName, "ingress"])
        _ = try? run("ip", ["link", "del", "dev", tapName])
    }
}
