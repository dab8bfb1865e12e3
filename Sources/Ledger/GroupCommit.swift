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

    private let state = Mutex(State())
    private let write: @Sendable ([Item]) async throws -> Void
    private let closedError: @Sendable () -> any Error

    /// `write` must be all or nothing: its items are acknowledged together or failed together.
    init(closedError: @escaping @Sendable () -> any Error, write: @escaping @Sendable ([Item]) async throws -> Void) {
        self.write = write
        self.closedError = closedError
    }

    /// Returns once a write holding `item` has succeeded; throws that write's error otherwise.
    func submit(_ item: Item) async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            let next: GroupCommitStep = state.withLock { s in
                if s.closed { return .refuse }
                s.pending.append((item, continuation))
                if s.flushing { return .wait }
                s.flushing = true
                return .start
            }
            switch next {
            case .refuse: continuation.resume(throwing: closedError())
            case .wait: break
            case .start: Task { await self.flush() }
            }
        }
    }

    private func flush() async {
        while true {
            let batch = state.withLock { s -> [(Item, CheckedContinuation<Void, any Error>)] in
                if s.pending.isEmpty { s.flushing = false }
                defer { s.pending = [] }
                return s.pending
            }
            if batch.isEmpty { return }
            do {
                try await write(batch.map { $0.0 })
                for (_, c) in batch { c.resume() }
            } catch {
                for (_, c) in batch { c.resume(throwing: error) }
            }
        }
    }

    /// Refuses new items and waits for the running write (and what queued before) to finish.
    func close() async {
        state.withLock { $0.closed = true }
        while state.withLock({ $0.flushing }) { try? await Task.sleep(for: .milliseconds(5)) }
    }
}

private enum GroupCommitStep { case refuse, wait, start }
