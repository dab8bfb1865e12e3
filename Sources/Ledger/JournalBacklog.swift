import Foundation
import GatewayCore
import Logging
import Synchronization

/// Events that are durable in the journal but not yet in the database, and the thread that
/// stores them there: in transactions of hundreds of events rather than one per batch, which
/// is what keeps SQLite's per-commit work off the request path.
///
/// A transaction is due when the oldest waiting event has waited `interval`, when enough are
/// waiting, when a reader asks to catch up, or at shutdown. A failed transaction is tried
/// again; the events stay in the journal meanwhile and are never lost.
final class JournalBacklog: Sendable {
    /// Events per transaction, at most.
    static let maxTransaction = 4096
    /// Enough waiting to store at once.
    static let dueCount = 1024
    /// At most this many events wait in memory: beyond it the journal's writer (and so the
    /// requests it answers) waits for the database, instead of memory growing with a slow disk.
    static let maxWaiting = 65_536

    private struct State {
        var entries: [UsageJournal.Entry] = []
        var oldest = ContinuousClock.now
        /// Events whose request id the client chose, by event id: a retry must find them
        /// before they reach the database.
        var retryable: [String: UsageEvent] = [:]
        var appliedThrough: UInt64
        var acknowledgedThrough: UInt64
        var waiters: [(seq: UInt64, continuation: CheckedContinuation<Void, any Error>)] = []
        var closing = false
        var finished = false
        var finishers: [CheckedContinuation<Void, Never>] = []
        /// Failed transactions in a row (logged at the first and every 60th).
        var failures = 0
        /// Ok events of reserved signings, by reservation key: each is stored in its
        /// reservation's place, with no flush of its own.
        var fulfilled: [String: UsageEvent] = [:]
        /// Reservations a later event ended without signatures: stored as nothing.
        var released: Set<String> = []
        /// The reservation storing waits for: its signing has not ended yet.
        var awaiting: String?
    }

    /// The reason kept with a reservation stored without an outcome.
    static let openReservationReason = "no outcome was recorded before the gateway stopped; billed as signed"

    /// The events `entries` stand for, in order: a reservation becomes its ok event, or
    /// nothing once released, and the first one still open ends the run unless `billOpen` (at
    /// recovery and shutdown), which stores it as signed: its signatures may have been returned.
    static func settle(_ entries: ArraySlice<UsageJournal.Entry>, fulfilled: [String: UsageEvent], released: Set<String>,
                       billOpen: Bool) -> (events: [UsageEvent], consumed: Int, through: UInt64?, awaiting: String?) {
        var events: [UsageEvent] = []
        events.reserveCapacity(entries.count)
        var consumed = 0, through: UInt64?
        for e in entries {
            if e.reserved {
                let key = UsageJournal.reservationKey(e.event)
                if let ok = fulfilled[key] {
                    events.append(ok)
                } else if !released.contains(key) {
                    guard billOpen else { return (events, consumed, through, key) }
                    var signed = e.event
                    signed.reason = openReservationReason
                    events.append(signed)
                }
            } else {
                events.append(e.event)
            }
            consumed += 1
            through = e.seq
        }
        return (events, consumed, through, nil)
    }

    private let state: Mutex<State>
    private let wake = DispatchSemaphore(value: 0)
    /// Signalled after each stored transaction, for a writer held back by `maxWaiting`.
    private let room = DispatchSemaphore(value: 0)
    private let writer: SQLiteChainWriter
    private let journal: UsageJournal
    private let interval: Duration
    private let logger: Logger

    init(writer: SQLiteChainWriter, journal: UsageJournal, appliedThrough: UInt64, interval: Duration, logger: Logger) {
        self.writer = writer
        self.journal = journal
        self.interval = interval
        var logger = logger
        logger[metadataKey: "request_id"] = "ledger-apply"
        self.logger = logger
        state = Mutex(State(appliedThrough: appliedThrough, acknowledgedThrough: appliedThrough))
        NamedThread.start("ledger-apply", scheduling: .batch) { [self] in run() }
    }

    /// Called by the journal's writer before it writes a batch: waits while too many events
    /// wait for the database, and after `limit` refuses the batch (its callers get a 503 and
    /// nothing is signed) rather than hold them without end.
    func awaitRoom(limit: Duration = .seconds(10)) throws {
        let deadline = ContinuousClock.now + limit
        while state.withLock({ $0.entries.count >= Self.maxWaiting }) {
            guard ContinuousClock.now < deadline else {
                throw LedgerBehind(underlying: "\(Self.maxWaiting) events wait for the database")
            }
            wake.signal()
            _ = room.wait(timeout: .now() + .milliseconds(100))
        }
    }

    /// Takes a batch the journal has just made durable (before its callers are answered).
    func enqueue(_ entries: [UsageJournal.Entry]) {
        guard let last = entries.last else { return }
        let due = state.withLock { s -> Bool in
            let wasEmpty = s.entries.isEmpty
            if wasEmpty { s.oldest = .now }
            s.entries += entries
            for e in entries { if let r = e.releases { s.released.insert(r) } }
            for e in entries where !e.reserved && e.event.requestIDFromClient && s.retryable[e.event.id] == nil {
                // The first event with an id is the one the database keeps (later ones are retries).
                s.retryable[e.event.id] = e.event
            }
            s.acknowledgedThrough = last.seq
            return wasEmpty || s.entries.count >= Self.dueCount
        }
        if due { wake.signal() }
    }

    /// The ok event of a reserved signing, in place of its reservation (durable already).
    func fulfil(_ reservation: String, with event: UsageEvent) {
        let due = state.withLock { s -> Bool in
            s.fulfilled[reservation] = event
            if event.requestIDFromClient && s.retryable[event.id] == nil { s.retryable[event.id] = event }
            // Only a reader waiting for it hurries storing; otherwise it goes with the next transaction.
            return s.awaiting == reservation && !s.waiters.isEmpty
        }
        if due { wake.signal() }
    }

    func retryable(_ id: String) -> UsageEvent? { state.withLock { $0.retryable[id] } }

    /// Returns once every event acknowledged before the call is in the database; throws if
    /// storing them fails (a reader must not take a partial ledger for the whole).
    func caughtUp() async throws {
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, any Error>) in
            let done = state.withLock { s -> Bool in
                if s.appliedThrough >= s.acknowledgedThrough { return true }
                s.waiters.append((s.acknowledgedThrough, c))
                return false
            }
            if done { c.resume() } else { wake.signal() }
        }
    }

    /// Stores what is waiting and stops the thread; returns when it has.
    func finish() async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let done = state.withLock { s -> Bool in
                s.closing = true
                if s.finished { return true }
                s.finishers.append(c)
                return false
            }
            if done { c.resume() } else { wake.signal() }
        }
    }

    /// Stops the thread after storing what is waiting, without waiting for it.
    func close() {
        state.withLock { $0.closing = true }
        wake.signal()
    }

    private func run() {
        while true {
            let next = state.withLock { s -> Step in
                if s.entries.isEmpty { return s.closing ? .stop : .sleep(nil) }
                if let a = s.awaiting, !s.closing, s.fulfilled[a] == nil, !s.released.contains(a) {
                    // That signing has not ended: look again after an interval (or when it ends, if a reader waits).
                    return .sleep(interval)
                }
                let waited = ContinuousClock.now - s.oldest
                if s.closing || !s.waiters.isEmpty || s.entries.count >= Self.dueCount || waited >= interval { return .store }
                return .sleep(interval - waited)
            }
            switch next {
            case .stop:
                // Nothing is left to store: the journal's segments can go, and its lock with them.
                journal.close(storedThrough: state.withLock { $0.appliedThrough })
                let finishers = state.withLock { s -> [CheckedContinuation<Void, Never>] in
                    s.finished = true
                    defer { s.finishers = [] }
                    return s.finishers
                }
                for f in finishers { f.resume() }
                return
            case .sleep(nil):
                wake.wait()
                journal.prepareSpare()
            case .sleep(let d?):
                _ = wake.wait(timeout: .now() + .nanoseconds(max(1, d.wholeNanoseconds)))
            case .store:
                store()
            }
        }
    }

    private enum Step { case stop, sleep(Duration?), store }

    private func store() {
        let chunk = state.withLock { s in
            let c = Self.settle(s.entries.prefix(Self.maxTransaction), fulfilled: s.fulfilled, released: s.released,
                                billOpen: s.closing)
            s.awaiting = c.awaiting
            return c
        }
        guard let last = chunk.through else { return }
        do {
            try writer.append(chunk.events, journalThrough: last)
        } catch {
            let (failed, count) = state.withLock { s -> ([CheckedContinuation<Void, any Error>], Int) in
                s.failures += 1
                defer { s.waiters = [] }
                return (s.waiters.map(\.continuation), s.failures)
            }
            if count % 60 == 1 {
                logger.error("usage events cannot be stored in the ledger database; they stay in the journal and are tried again", metadata: [
                    "events": .stringConvertible(chunk.events.count), "failures": .stringConvertible(count), "error": .string("\(error)"),
                ])
            }
            for w in failed { w.resume(throwing: LedgerBehind(underlying: "\(error)")) }
            // The events stay in the journal; try again after a pause (or at once on close).
            _ = wake.wait(timeout: .now() + .seconds(1))
            return
        }
        let ready = state.withLock { s -> [CheckedContinuation<Void, any Error>] in
            for e in s.entries.prefix(chunk.consumed) where e.reserved {
                let key = UsageJournal.reservationKey(e.event)
                s.fulfilled[key] = nil
                s.released.remove(key)
            }
            s.entries.removeFirst(chunk.consumed)
            // The rest is due as well, unless storing stopped at a signing under way: then it
            // waits an interval, or every signing would cost a transaction of its own.
            if !s.entries.isEmpty { s.oldest = s.awaiting == nil ? .now - interval : .now }
            for e in chunk.events where e.requestIDFromClient { s.retryable.removeValue(forKey: e.id) }
            s.appliedThrough = last
            s.failures = 0
            let done = s.waiters.filter { $0.seq <= last }.map(\.continuation)
            s.waiters.removeAll { $0.seq <= last }
            return done
        }
        for w in ready { w.resume() }
        room.signal()
        journal.release(through: last)
        journal.prepareSpare()
    }
}

/// The database could not take the acknowledged events (they are safe in the journal).
struct LedgerBehind: Error, CustomStringConvertible {
    var underlying: String
    var description: String { "the ledger database is behind its journal: \(underlying)" }
}
