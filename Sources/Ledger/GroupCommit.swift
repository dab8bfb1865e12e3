import Foundation
import GatewayCore
import NIOCore
import NIOPosix
import Synchronization

/// Group commit, once for every backend: callers wait for their item to be written, while at
/// most one write runs and takes everything that queued up meanwhile. Durability costs one
/// flush per batch, not per caller; no caller returns before the write holding its item does.
///
/// A lock rather than an actor: a caller only appends and parks, which is cheaper than an
/// actor hop at tens of thousands of calls per second.
final class GroupCommit<Item: Sendable>: Sendable {
    /// How long a batch may wait for operations still under way to join it. On a machine where
    /// a flush costs far more than the wait (a virtual disk), fewer, larger batches leave more
    /// CPU to the requests; an operation alone is never kept waiting.
    struct Window: Sendable {
        var maxDelay: Duration
        var maxItems: Int
        /// Operations under way that have not reached the ledger yet.
        var working: @Sendable () -> Int
    }

    private struct Waiter {
        var item: Item
        var continuation: CheckedContinuation<Void, any Error>
        /// The event loop the caller parked on: it is resumed there, where its connection lives,
        /// instead of on whichever loop the writer thread's resume would pick.
        var loop: (any EventLoop)?
    }

    private struct State {
        var pending: [Waiter] = []
        var oldest = ContinuousClock.now
        var flushing = false
        var collecting = false
        var closed = false
    }

    /// What the writer thread shares with the callers. The thread holds this, not the
    /// `GroupCommit`, so dropping the last reference to a ledger still ends its thread.
    private final class Queue: Sendable {
        let state = Mutex(State())
        /// Wakes the writer thread: once per idle-to-busy transition, when a window it waits in
        /// can close early, and on close.
        let wake = DispatchSemaphore(value: 0)
        let window: Window?

        init(window: Window?) { self.window = window }
    }

    /// Who runs the writes.
    enum Driver: Sendable {
        /// A task per busy period: for stores whose client is asynchronous (PostgreSQL).
        case task(@Sendable ([Item]) async throws -> Void)
        /// A thread of its own that blocks in each write (the SQLite ledger's journal): the next
        /// batch starts the moment a flush returns, instead of waiting for a turn on a busy
        /// event loop.
        case thread(name: String, window: Window?, @Sendable ([Item]) throws -> Void)
    }

    private let queue: Queue
    private let driver: Driver
    private let closedError: @Sendable () -> any Error

    /// The write must be all or nothing: its items are acknowledged together or failed together.
    init(closedError: @escaping @Sendable () -> any Error, driver: Driver) {
        self.driver = driver
        self.closedError = closedError
        if case .thread(let name, let window, let write) = driver {
            let queue = Queue(window: window)
            self.queue = queue
            NamedThread.start(name) { Self.runThread(queue, write) }
        } else {
            self.queue = Queue(window: nil)
        }
    }

    deinit {
        queue.state.withLock { $0.closed = true }
        queue.wake.signal()
    }

    /// Returns once a write holding `item` has succeeded; throws that write's error otherwise.
    func submit(_ item: Item) async throws {
        let loop = MultiThreadedEventLoopGroup.currentEventLoop
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            let next: GroupCommitStep = queue.state.withLock { s in
                if s.closed { return .refuse }
                if s.pending.isEmpty { s.oldest = .now }
                s.pending.append(Waiter(item: item, continuation: continuation, loop: loop))
                if s.flushing {
                    guard s.collecting, let w = queue.window else { return .wait }
                    return w.working() == 0 || s.pending.count >= w.maxItems ? .closeWindow : .wait
                }
                s.flushing = true
                return .start
            }
            switch next {
            case .refuse: continuation.resume(throwing: closedError())
            case .wait: break
            case .closeWindow: queue.wake.signal()
            case .start:
                switch driver {
                case .task(let write): Task { [queue] in await Self.drain(queue, write) }
                case .thread: queue.wake.signal()
                }
            }
        }
    }

    /// Writes batches until none is pending, then marks the queue idle (under the same lock
    /// that `submit` checks, so an item is never left behind).
    private static func drain(_ queue: Queue, _ write: ([Item]) async throws -> Void) async {
        while let batch = nextBatch(queue) {
            do {
                try await write(batch.map(\.item))
                settle(batch, nil)
            } catch {
                settle(batch, error)
            }
        }
    }

    private static func runThread(_ queue: Queue, _ write: ([Item]) throws -> Void) {
        while true {
            queue.wake.wait()
            while true {
                if let window = queue.window { collect(queue, window) }
                guard let batch = nextBatch(queue) else { break }
                do {
                    try write(batch.map(\.item))
                    settle(batch, nil)
                } catch {
                    settle(batch, error)
                }
            }
            if queue.state.withLock({ $0.closed && !$0.flushing }) { return }
        }
    }

    /// Waits while operations under way may still join the batch: until none is left working,
    /// the batch is full, its oldest item has waited `maxDelay`, or the queue closes.
    private static func collect(_ queue: Queue, _ window: Window) {
        while true {
            // `collecting` is set before `working` is read, so an operation that reaches the
            // ledger after the read sees it set and wakes this thread.
            let (count, oldest, closed) = queue.state.withLock { s in
                s.collecting = true
                return (s.pending.count, s.oldest, s.closed)
            }
            let remaining = window.maxDelay - (ContinuousClock.now - oldest)
            guard !closed, count > 0, count < window.maxItems, window.working() > 0, remaining > .zero else { break }
            let c = remaining.components
            let nanos = Int(c.seconds) * 1_000_000_000 + Int(c.attoseconds / 1_000_000_000)
            _ = queue.wake.wait(timeout: .now() + .nanoseconds(max(1, nanos)))
        }
        queue.state.withLock { $0.collecting = false }
    }

    /// Acknowledges a written batch (`error` nil) or fails every caller in it with `error`,
    /// each on its own event loop: one hand-off per loop and batch.
    private static func settle(_ batch: [Waiter], _ error: (any Error)?) {
        var byLoop: [(loop: any EventLoop, continuations: [CheckedContinuation<Void, any Error>])] = []
        for w in batch {
            guard let loop = w.loop else {
                resume(w.continuation, error)
                continue
            }
            if let i = byLoop.firstIndex(where: { $0.loop === loop }) {
                byLoop[i].continuations.append(w.continuation)
            } else {
                byLoop.append((loop, [w.continuation]))
            }
        }
        for (loop, continuations) in byLoop {
            loop.execute { for c in continuations { resume(c, error) } }
        }
    }

    private static func resume(_ c: CheckedContinuation<Void, any Error>, _ error: (any Error)?) {
        if let error { c.resume(throwing: error) } else { c.resume() }
    }

    private static func nextBatch(_ queue: Queue) -> [Waiter]? {
        queue.state.withLock { s in
            if s.pending.isEmpty {
                s.flushing = false
                return nil
            }
            defer { s.pending = [] }
            return s.pending
        }
    }

    /// Refuses new items and waits for the running write (and what queued before) to finish.
    func close() async {
        queue.state.withLock { $0.closed = true }
        queue.wake.signal()
        while queue.state.withLock({ $0.flushing }) { try? await Task.sleep(for: .milliseconds(5)) }
        queue.wake.signal()
    }
}

private enum GroupCommitStep { case refuse, wait, start, closeWindow }
