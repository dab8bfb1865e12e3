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

    /// One item's way to disk. Its caller may wait for it at once (`submit`), later (a
    /// reservation, waited for when its signing ends) or never; once written, waiting for it
    /// costs no hand-off between threads.
    final class Ticket: Sendable {
        fileprivate let index: UInt64
        /// Enqueued with a `due` still ahead: waiting for it hurries it.
        fileprivate let held: Bool
        fileprivate let state = Mutex(TicketState())

        fileprivate init(index: UInt64, held: Bool) {
            self.index = index
            self.held = held
        }
    }

    fileprivate struct TicketState {
        var outcome: Result<Void, any Error>?
        var continuation: CheckedContinuation<Void, any Error>?
        /// The event loop the caller parked on: it is resumed there, where its connection lives,
        /// instead of on whichever loop the writer thread's resume would pick.
        var loop: (any EventLoop)?
    }

    private struct Waiter {
        var item: Item
        var ticket: Ticket
    }

    private struct State {
        var pending: [Waiter] = []
        var oldest = ContinuousClock.now
        /// The soonest moment a pending item must be written by.
        var due = ContinuousClock.now
        /// Someone waits for a pending item now: write without waiting for `due`.
        var hurry = false
        /// Items enqueued, and items handed to a write, so far: a ticket's index below `taken`
        /// is being written or written.
        var enqueued: UInt64 = 0
        var taken: UInt64 = 0
        var flushing = false
        var collecting = false
        var closed = false
    }

    /// What the writer thread shares with the callers. The thread holds this, not the
    /// `GroupCommit`, so dropping the last reference to a ledger still ends its thread.
    private final class Queue: Sendable {
        let state = Mutex(State())
        /// Wakes the writer thread: once per idle-to-busy transition, when a batch it waits for
        /// must be written sooner, and on close.
        let wake = DispatchSemaphore(value: 0)
        let window: Window?
        /// How long the thread's recent writes took (nanoseconds, a moving average).
        let writeNanos = Atomic<Int>(0)

        init(window: Window?) { self.window = window }

        var maxItems: Int { window?.maxItems ?? 256 }
    }

    /// Who runs the writes.
    enum Driver: Sendable {
        /// A task per busy period: for stores whose client is asynchronous (PostgreSQL).
        case task(@Sendable ([Item]) async throws -> Void)
        /// A thread of its own that blocks in each write (the SQLite ledger's journal): the next
        /// batch starts the moment a flush returns, instead of waiting for a turn on a busy
        /// event loop. It runs as `NamedThread.Scheduling.batch`.
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
            NamedThread.start(name, scheduling: .batch) { Self.runThread(queue, write) }
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
        try await wait(enqueue(item))
    }

    /// Queues `item` to be written by `due` (at once if nil) and returns without waiting. Items
    /// not due yet let the writer thread gather more into one flush; `wait` hurries them.
    func enqueue(_ item: Item, due: ContinuousClock.Instant? = nil) -> Ticket {
        let now = ContinuousClock.now
        let due = due ?? now
        let (ticket, next) = queue.state.withLock { s -> (Ticket, GroupCommitStep) in
            let ticket = Ticket(index: s.enqueued, held: due > now)
            if s.closed { return (ticket, .refuse) }
            s.enqueued += 1
            let sooner = s.pending.isEmpty || due < s.due
            if s.pending.isEmpty { s.oldest = now }
            if sooner { s.due = due }
            s.pending.append(Waiter(item: item, ticket: ticket))
            if s.flushing {
                // The writer may be waiting for the batch to fill: wake it if this item changes when it is due.
                guard s.collecting else { return (ticket, .wait) }
                let windowCloses = queue.window.map { $0.working() == 0 } ?? false
                return (ticket, sooner || windowCloses || s.pending.count >= queue.maxItems ? .closeWindow : .wait)
            }
            s.flushing = true
            return (ticket, .start)
        }
        switch next {
        case .refuse: Self.finish(ticket, .failure(closedError()))
        case .wait: break
        case .closeWindow: queue.wake.signal()
        case .start:
            switch driver {
            case .task(let write): Task { [queue] in await Self.drain(queue, write) }
            case .thread: queue.wake.signal()
            }
        }
        return ticket
    }

    /// Returns once the write holding the ticket's item has succeeded; throws its error
    /// otherwise. An item still held back for a later `due` is written without further delay.
    func wait(_ ticket: Ticket) async throws {
        if let done = ticket.state.withLock({ $0.outcome }) { return try done.get() }
        let loop = MultiThreadedEventLoopGroup.currentEventLoop
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            let done = ticket.state.withLock { t -> Result<Void, any Error>? in
                if let o = t.outcome { return o }
                t.continuation = continuation
                t.loop = loop
                return nil
            }
            if let done {
                continuation.resume(with: done)
                return
            }
            guard ticket.held else { return }
            let wake = queue.state.withLock { s -> Bool in
                guard ticket.index >= s.taken, !s.hurry else { return false }
                s.hurry = true
                return s.collecting
            }
            if wake { queue.wake.signal() }
        }
    }

    /// How long a write (and its flush) has recently taken.
    var typicalWrite: Duration { .nanoseconds(queue.writeNanos.load(ordering: .relaxed)) }

    /// Writes batches until none is pending, then marks the queue idle (under the same lock
    /// that `enqueue` checks, so an item is never left behind).
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
                collect(queue)
                guard let batch = nextBatch(queue) else { break }
                let started = ContinuousClock.now
                do {
                    try write(batch.map(\.item))
                    settle(batch, nil)
                } catch {
                    settle(batch, error)
                }
                let nanos = (ContinuousClock.now - started).wholeNanoseconds
                let average = queue.writeNanos.load(ordering: .relaxed)
                queue.writeNanos.store(average == 0 ? nanos : average + (nanos - average) / 8, ordering: .relaxed)
            }
            if queue.state.withLock({ $0.closed && !$0.flushing }) { return }
        }
    }

    /// Waits while the batch may still grow: until the soonest item in it is due (and, with a
    /// window, while operations under way may still join, up to `maxDelay`), unless the batch
    /// is full, someone waits for an item in it, or the queue closes.
    private static func collect(_ queue: Queue) {
        while true {
            // `collecting` is set before `working` is read, so an operation that reaches the
            // ledger after the read sees it set and wakes this thread.
            let (count, oldest, due, hurry, closed) = queue.state.withLock { s in
                s.collecting = true
                return (s.pending.count, s.oldest, s.due, s.hurry, s.closed)
            }
            guard !closed, !hurry, count > 0, count < queue.maxItems else { break }
            var deadline = due
            if let window = queue.window, window.working() > 0 { deadline = max(deadline, oldest + window.maxDelay) }
            let remaining = deadline - ContinuousClock.now
            guard remaining > .zero else { break }
            _ = queue.wake.wait(timeout: .now() + .nanoseconds(max(1, remaining.wholeNanoseconds)))
        }
        queue.state.withLock { $0.collecting = false }
    }

    /// Acknowledges a written batch (`error` nil) or fails every item in it with `error`. Callers
    /// already waiting are resumed each on its own event loop: one hand-off per loop and batch.
    private static func settle(_ batch: [Waiter], _ error: (any Error)?) {
        let outcome: Result<Void, any Error> = error.map { .failure($0) } ?? .success(())
        var byLoop: [(loop: any EventLoop, continuations: [CheckedContinuation<Void, any Error>])] = []
        for w in batch {
            let (parked, loop) = w.ticket.state.withLock { t in
                t.outcome = outcome
                defer { t.continuation = nil }
                return (t.continuation, t.loop)
            }
            guard let parked else { continue }
            guard let loop else {
                parked.resume(with: outcome)
                continue
            }
            if let i = byLoop.firstIndex(where: { $0.loop === loop }) {
                byLoop[i].continuations.append(parked)
            } else {
                byLoop.append((loop, [parked]))
            }
        }
        for (loop, continuations) in byLoop {
            loop.execute { for c in continuations { c.resume(with: outcome) } }
        }
    }

    private static func finish(_ ticket: Ticket, _ outcome: Result<Void, any Error>) {
        let parked = ticket.state.withLock { t in
            t.outcome = outcome
            defer { t.continuation = nil }
            return t.continuation
        }
        parked?.resume(with: outcome)
    }

    private static func nextBatch(_ queue: Queue) -> [Waiter]? {
        queue.state.withLock { s in
            if s.pending.isEmpty {
                s.flushing = false
                return nil
            }
            defer {
                s.pending = []
                s.taken = s.enqueued
                s.hurry = false
            }
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

extension Duration {
    var wholeNanoseconds: Int { Int(components.seconds) * 1_000_000_000 + Int(components.attoseconds / 1_000_000_000) }
}
