extension SplitVirtqueue {
    /// What one `drain` pass found.
    public struct DrainResult: Equatable, Sendable {
        /// The driver broke the queue (2.7.13): the device must stop and ask for a reset.
        public var broken: Bool
        /// The driver wants an interrupt for the buffers used in this pass (2.7.7 / 2.7.10).
        public var needsNotification: Bool
    }

    /// The request loop every device shares (VIRTIO 1.2 2.7.13–2.7.14): with driver notifications
    /// suppressed, takes each available chain, lets `process` handle it and return the number of
    /// bytes it wrote into the chain, and puts it in the used ring; re-enables notifications and
    /// goes round again if the driver posted more meanwhile. A bad head consumes its ring entry
    /// and the loop carries on; a broken queue ends it.
    public func drain(_ process: (DescriptorChain) -> UInt32) -> DrainResult {
        var broken = false
        repeat {
            disableNotifications()
            while true {
                let chain: DescriptorChain?
                do { chain = try nextChain() } catch {
                    if isBroken { broken = true; break }
                    continue
                }
                guard let chain else { break }
                let length = process(chain)
                do { try addUsed(head: chain.head, length: length) } catch {
                    broken = true
                    break
                }
            }
        } while !broken && enableNotifications()
        // enableNotifications breaks the queue on a bad avail.idx (and then says "nothing more").
        return DrainResult(broken: broken || isBroken, needsNotification: needsNotification())
    }
}

/// Carries the queue the transport hands over on DRIVER_OK into a device's lock. The transport
/// does not touch a queue again after DRIVER_OK (the VirtioDevice contract), so this is a real
/// transfer; the protocol just cannot spell its parameter `sending`.
struct QueueHandover: @unchecked Sendable {
    let queues: [SplitVirtqueue?]
    /// Queue `index`, nil when the driver did not enable it (or the device has fewer).
    func take(_ index: Int) -> SplitVirtqueue? { index < queues.count ? queues[index] : nil }
}
