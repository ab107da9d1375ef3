import ExtensionProtocol

extension FuzzTargets {
    /// What an extension process sends the VMM (docs/abi.md, "Extensions"): the input as a
    /// stream of messages, each framed by its size field and decoded strictly, as the VMM's
    /// reader does. A decoded message must encode back to the same bytes.
    static let extensionMessage = FuzzTarget(
        name: "extension-message",
        summary: "extension protocol: message framing and strict decoding, round trip"
    ) { bytes in
        var offset = 0
        while bytes.count - offset >= ExtensionMessage.headerSize {
            let rest = UnsafeRawBufferPointer(rebasing: bytes[offset...])
            let size: Int
            do throws(ExtensionMessage.Malformed) { size = try ExtensionMessage.size(ofHeader: rest) } catch {
                requireOneLine(error.reason, "size")
                return
            }
            guard size <= rest.count else { return }
            let frame = UnsafeRawBufferPointer(rebasing: rest[0..<size])
            do throws(ExtensionMessage.Malformed) {
                let message = try ExtensionMessage(decoding: frame)
                guard message.encoded().elementsEqual(frame) else { fatalError("extension-message: the round trip changed the bytes") }
            } catch {
                requireOneLine(error.reason, "decode")
            }
            offset += size
        }
    }
}
