/// What a thread does, which decides the system calls it may make. Each role's
/// allow-list is in `SeccompAllowList`; docs/security.md explains every entry.
public enum SeccompRole: String, CaseIterable, Sendable {
    /// The process-wide baseline, loaded on every thread at once (TSYNC) when set-up
    /// is over: the union of everything skiff does afterwards, including rebuilding
    /// a VM for `vm.reboot`. The main thread and libdispatch's workers keep just
    /// this; the roles below narrow it on their own threads.
    case process
    /// The main thread of a VM without the API: waits for the stop, then tears
    /// down (joins, drains and flushes disks, closes, unmaps).
    case main
    /// A vCPU thread: KVM_RUN and the device emulation its exits reach.
    case vcpu
    /// The device event loop: virtqueues, disk requests (queued to the disk I/O threads, or synchronous), TAP, stdin.
    case events
    /// A disk's I/O thread (`skiff-disk-io`): `preadv`/`pwritev` between the
    /// image file and guest RAM, then a write to the disk's completion eventfd.
    case diskIO
    /// The API server's event-loop thread (and the control work it starts):
    /// HTTP on the accepted unix socket; pause, resume, snapshot writing.
    case api
    /// Reserved for the live-migration thread (sockets to the peer, reading guest
    /// RAM and dirty logs); its allow-list comes with migration.
    case migration
}
