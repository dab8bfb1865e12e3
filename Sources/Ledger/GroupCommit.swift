import Foundation
import Synchronization

/// Group commit, once for every backend: callers wait for their item to be written, while at
/// most one write runs and takes everything that queued up meanwhile. Durability costs one
/// commit per batch, not per caller; no caller returns before the write holding its item does.
///
/// A lock rather than an actor: a caller only appends and parks, which is cheaper than an
/// actor hop at tens of thousands of calls per second.
final class GroupCommit<Item: Sendable>: Sendable {
    private struct State {
        var pending: [(Item, CheckedContinuation<Void, any Error>)] = []
        var flushing = false
        var closed = false
    }

    /// What the writer thread shares with the callers. The thread holds this, not the
    /// `GroupCommit`, so dropping the last reference to a ledger still ends its thread.
    private final class Queue: Sendable {
        let state = Mutex(State())
        /// Wakes the writer thread: once per idle-to-busy transition, and on close.
        let wake = DispatchSemaphore(value: 0)
    }

    /// Who runs the writes.
    enum Driver: Sendable {
        /// A task per busy period: for stores whose client is asynchronous (PostgreSQL).
        case task(@Sendable ([Item]) async throws -> Void)
        /// A thread of its own that blocks in each write (SQLite): the next batch starts the
        /// moment a commit returns, instead of waiting for a turn on a busy event loop and then
        /// hopping to the database's queue.
        case thread(name: String, @Sendable ([Item]) throws -> Void)
    }

    private let queue = Queue()
    private let driver: Driver
    private let closedError: @Sendable () -> any Error

    /// The write must be all or nothing: its items are acknowledged together or failed together.
    init(closedError: @escaping @Sendable () -> any Error, driver: Driver) {
        self.driver = driver
        self.closedError = closedError
        if case .thread(let name, let write) = driver {
            let thread = Thread { [queue] in Self.runThread(queue, write) }
            thread.name = name
            thread.start()
        }
    }

    deinit {
        queue.state.withLock { $0.closed = true }
        queue.wake.signal()
    }

    /// Returns once a write holding `item` has succeeded; throws that write's error otherwise.
    func submit(_ item: Item) async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            let next: GroupCommitStep = queue.state.withLock { s in
                if s.closed { return .refuse }
                s.pending.append((item, continuation))
                if s.flushing { return .wait }
                s.flushing = true
                return .start
            }
            switch next {
            case .refuse: continuation.resume(throwing: closedError())
            case .wait: break
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
                try await write(batch.map { $0.0 })
                settle(batch, nil)
            } catch {
                settle(batch, error)
            }
        }
    }

    private static func runThread(_ queue: Queue, _ write: ([Item]) throws -> Void) {
        while true {
            queue.wake.wait()
            while let batch = nextBatch(queue) {
                do {
                    try write(batch.map { $0.0 })
                    settle(batch, nil)
                } catch {
                    settle(batch, error)
                }
            }
            if queue.state.withLock({ $0.closed && !$0.flushing }) { return }
        }
    }

    /// Acknowledges a written batch (`error` nil) or fails every caller in it with `error`.
    private static func settle(_ batch: [(Item, CheckedContinuation<Void, any Error>)], _ error: (any Error)?) {
        for (_, c) in batch {
            if let error { c.resume(throwing: error) } else { c.resume() }
        }
    }

    private static func nextBatch(_ queue: Queue) -> [(Item, CheckedContinuation<Void, any Error>)]? {
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
        while queue.state.withLock({ $0.flushing }) { try? await Task.sleep(for: .milliseconds(5)) }
        queue.wake.signal()
    }
}

private enum GroupCommitStep { case refuse, wait, start }
