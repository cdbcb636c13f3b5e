import Posix

/// A host system call made on the device's behalf failed (eventfd, epoll, I/O).
public typealias HostCallError = SystemCallError
