@_exported import Posix

/// A failed KVM call: which operation, and the errno it returned. The same
/// type as every other failed host call (`SystemCallError`), named for the
/// call sites that read better with it.
public typealias KVMError = SystemCallError
