import CKVM

// Thin Swift names for the C shims, so the rest of the target reads as Swift.
@inline(__always) func ckvmIoctlPointer(_ fd: Int32, _ request: UInt, _ arg: UnsafeMutableRawPointer?) -> Int32 {
    ckvm_ioctl_ptr(fd, request, arg)
}
@inlinable @inline(__always) func ckvmIoctlValue(_ fd: Int32, _ request: UInt, _ value: UInt) -> Int32 {
    ckvm_ioctl_val(fd, request, value)
}
