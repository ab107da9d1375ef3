import Foundation
import FirecrackerJSON
import VMM
import VMSpec

extension FuzzTargets {
    /// The Firecracker config file of `swiftlet run|api --config-file`: StrictJSON's check,
    /// JSONDecoder, the one-line messages, the uniqueness checks, and the mapping onto a Linux and
    /// an hvt machine (sizes, MACs, drive ids, boot arguments: the values' one model).
    static let firecrackerConfig = FuzzTarget(
        name: "firecracker-config",
        summary: "Firecracker config file: strict JSON, decoding, mapping onto Linux and hvt machines"
    ) { bytes in
        let config: FirecrackerConfig
        do throws(VMMError) { config = try FirecrackerConfig.parse(Data(bytes)) } catch {
            requireOneLine(error.message, "config parse")
            return
        }
        do throws(VMMError) { _ = try config.linuxConfig() } catch { requireOneLine(error.message, "linuxConfig") }
        do throws(VMMError) { _ = try config.hvtConfig() } catch { requireOneLine(error.message, "hvtConfig") }
    }
}
