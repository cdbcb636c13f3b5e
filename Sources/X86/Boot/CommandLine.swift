import GuestMemory

/// The kernel command line, written NUL-terminated at `Layout.commandLine`.
public enum KernelCommandLine {
    /// Writes `text` and returns its guest address. `maximumSize` counts the NUL.
    @discardableResult
    public static func write(_ text: String, to memory: GuestMemory,
                             maximumSize: Int = Int(Layout.commandLineMaxSize)) throws -> GuestAddress {
        var bytes = Array(text.utf8)
        guard !bytes.contains(0) else { throw BootError.invalidCommandLine("contains a NUL byte") }
        guard bytes.count < maximumSize else {
            throw BootError.commandLineTooLong(length: bytes.count, maximum: maximumSize)
        }
        bytes.append(0)
        let address = GuestAddress(Layout.commandLine)
        try memory.write(bytes, to: address)
        return address
    }
}
