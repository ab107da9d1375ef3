import Foundation
import OCIRuntime

extension FuzzTargets {
    /// What a container image and its caller hand `swiftlet oci` (docs/containerd.md): the input up
    /// to its first NUL is a bundle's config.json (parsed, then its guest read from the
    /// annotations with paths resolved in a rootfs of no files), the rest is a runc command line
    /// (NUL-separated arguments). Every refusal must be one line; an accepted guest's VMM command
    /// must name its kernel.
    static let ociBundle = FuzzTarget(
        name: "oci-bundle",
        summary: "swiftlet oci: config.json, annotations, runc's command line"
    ) { bytes in
        let split = bytes.firstIndex(of: 0) ?? bytes.count
        let config = Array(bytes[0..<split])
        let argv = bytes.count > split ? bytes[(split + 1)...].split(separator: 0, omittingEmptySubsequences: false)
            .map { String(decoding: $0, as: UTF8.self) } : []
        do throws(OCIError) {
            let line = try RuncCommandLine(argv)
            if !line.arguments.isEmpty { _ = try? line.containerID() }
        } catch {
            requireOneLine(error.message, "command line")
        }
        do throws(OCIError) {
            let spec = try BundleSpec.parse(Data(config))
            let guest = try GuestSpec(spec, rootfs: "/rootfs") { path, root, _ throws(OCIError) in
                try RootfsPath.resolve(path, in: root, kind: { _ in .regular }, linkTarget: { _ in nil })
            }
            let command = try VMMCommand(guest, network: nil)
            guard command.arguments.contains(guest.kernel), guest.kernel.hasPrefix("/rootfs") else {
                fatalError("oci-bundle: the VMM command lost the kernel or left the rootfs: \(command.arguments)")
            }
        } catch {
            requireOneLine(error.message, "bundle")
        }
    }
}
