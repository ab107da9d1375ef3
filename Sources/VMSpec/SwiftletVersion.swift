import CBuildInfo

/// Swiftlet's release and the versions of the interfaces it speaks: one place, which every
/// `--version`, `GET /version` and the daemon's API report.
public enum SwiftletVersion {
    /// This release of Swiftlet.
    public static let release = "0.12.0-dev"
    /// The Solo5 release whose `solo5-hvt` command line and ABIs `swiftlet hvt` follows.
    public static let solo5Release = "v0.12.1"
    /// The hvt ABI versions the tender loads (a unikernel's ABI note picks one).
    public static let hvtABIs = [1, 2]
    /// The version of the per-VM API (Firecracker's, api/swiftlet-vm-api.yaml).
    public static let vmAPI = "0.4.0"
    /// The version of swiftletd's API (docs/daemon.md).
    public static let daemonAPI = "0.1.0"

    /// The git commit of this build (scripts/install records it; "unknown" for a plain `swift build`).
    public static let commit = String(cString: swiftlet_build_commit())

    /// What `swiftlet --version` and `swiftletd --version` print.
    public static let summary = """
        swiftlet \(release) (commit \(commit))
        hvt tender: Solo5 \(solo5Release), ABI versions supported: \(hvtABIs.map(String.init).joined(separator: " "))
        VM API (Firecracker-compatible): \(vmAPI)
        daemon API: \(daemonAPI)
        """
}
