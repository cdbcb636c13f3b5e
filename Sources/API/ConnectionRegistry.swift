import NIOConcurrencyHelpers
import NIOCore

/// The server's shared bookkeeping, touched from the event loop, the control queue
/// and the thread calling `stop()`: the open connections (to cap them and close them
/// on stop), the requests whose answer is still owed, and whether the loop may still
/// be handed work.
final class ConnectionRegistry: Sendable {
    private struct State {
        var channels: [ObjectIdentifier: Channel] = [:]
        var answersOwed = 0
        var closed = false
    }

    let maximumConnections: Int
    private let state = NIOLockedValueBox(State())

    init(maximumConnections: Int) {
        self.maximumConnections = maximumConnections
    }

    /// Admits `channel` unless the cap is reached or the server is stopping; an admitted
    /// channel leaves the registry by itself when it closes.
    func admit(_ channel: Channel) -> Bool {
        let id = ObjectIdentifier(channel)
        let admitted = state.withLockedValue { s -> Bool in
            guard !s.closed, s.channels.count < maximumConnections else { return false }
            s.channels[id] = channel
            return true
        }
        if admitted {
            channel.closeFuture.whenComplete { [self] _ in
                state.withLockedValue { _ = $0.channels.removeValue(forKey: id) }
            }
        }
        return admitted
    }

    var openConnections: Int { state.withLockedValue { $0.channels.count } }

    /// A state-changing request was queued: its answer is owed until `answered()`.
    func owe() { state.withLockedValue { $0.answersOwed += 1 } }
    func answered() { state.withLockedValue { $0.answersOwed -= 1 } }
    var answersOwed: Int { state.withLockedValue { $0.answersOwed } }

    var isClosed: Bool { state.withLockedValue { $0.closed } }

    /// Runs `body` on `loop` unless the server has stopped. The lock is held across the
    /// hand-over so `close()` cannot shut the loop down between the check and the
    /// `execute` (NIO complains about work handed to a dead loop).
    func onLoop(_ loop: EventLoop, _ body: @escaping @Sendable () -> Void) -> Bool {
        state.withLockedValue { s in
            guard !s.closed else { return false }
            loop.execute(body)
            return true
        }
    }

    /// Stops admitting and handing work to the loop; returns the channels still open.
    func close() -> [Channel] {
        state.withLockedValue { s in
            s.closed = true
            return Array(s.channels.values)
        }
    }
}
