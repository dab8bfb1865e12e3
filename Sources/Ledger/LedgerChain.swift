import Crypto
import CSC
import Foundation
import GatewayCore

/// The last link of a tenant's chain.
struct ChainHead: Sendable, Equatable {
    var seq: Int64
    var hash: Data

    static let genesis = Data(repeating: 0, count: 32)
    static let empty = ChainHead(seq: 0, hash: genesis)
}

/// An event as a ledger stores it: the event, its place in its tenant's chain and its links.
public struct StoredEvent: Sendable {
    public var seq: Int64
    public var event: UsageEvent
    /// Milliseconds since 1970, as hashed (the stored time, not the Date's full precision).
    public var timeMs: Int64
    public var previousHash: Data
    public var hash: Data
}

/// A signed chain head, as stored.
public struct Checkpoint: Sendable, Equatable {
    public var tenant: String
    public var seq: Int64
    public var hash: Data
    public var timeMs: Int64
    public var keyID: String
    public var signature: Data
}

/// How one event is linked to the one before it; the same on every backend, so a ledger's
/// hashes do not depend on where it is kept.
public enum LedgerChain {
    /// SHA-256 over the previous link and the event's canonical form (every field that matters
    /// for billing and audit; the stored answer is evidence and stays outside).
    static func link(previous: Data, seq: Int64, event e: UsageEvent, timeMs: Int64) -> Data {
        var fields: [String: JSONValue] = [
            "seq": .number(Double(seq)), "id": .string(e.id), "time_ms": .number(Double(timeMs)),
            "tenant": .string(e.tenantID), "client": .string(e.clientID), "operation": .string(e.operation),
            "signatures": .int(e.signatures), "outcome": .string(e.outcome.rawValue),
            "latency_us": .int(e.latencyMicros), "request_id": .string(e.requestID),
        ]
        for (k, v) in [("credential", e.credentialID), ("upstream", e.upstream), ("sign_algo", e.signAlgorithm),
                       ("hash_algo", e.hashAlgorithm), ("stage", e.stage), ("reason", e.reason), ("evidence", e.evidence)] {
            if let v { fields[k] = .string(v) }
        }
        var h = SHA256()
        h.update(data: previous)
        h.update(data: JSONValue.object(fields).serialized())
        return Data(h.finalize())
    }

    static func timeMs(_ date: Date) -> Int64 { Int64((date.timeIntervalSince1970 * 1000).rounded()) }

    /// What one batch adds: the events with their seqs and links, the new heads, and the
    /// checkpoints due (one at every seq that is a multiple of the interval).
    struct Extension {
        var rows: [StoredEvent] = []
        var heads: [String: ChainHead]
        var checkpoints: [Checkpoint] = []
    }

    /// Chains `events` (already free of ids the ledger holds) after `heads`. A second event
    /// with an id seen earlier in the batch is a retry and is dropped.
    static func extend(_ events: [UsageEvent], after heads: [String: ChainHead], signer: CheckpointSigner?) throws -> Extension {
        var result = Extension(heads: heads)
        var seen = Set<String>()
        result.rows.reserveCapacity(events.count)
        for e in events where seen.insert(e.id).inserted {
            let head = result.heads[e.tenantID] ?? .empty
            let seq = head.seq + 1
            let ms = timeMs(e.time)
            let hash = link(previous: head.hash, seq: seq, event: e, timeMs: ms)
            let newHead = ChainHead(seq: seq, hash: hash)
            result.rows.append(StoredEvent(seq: seq, event: e, timeMs: ms, previousHash: head.hash, hash: hash))
            result.heads[e.tenantID] = newHead
            if let signer, seq % Int64(signer.interval) == 0 {
                result.checkpoints.append(try signer.sign(tenant: e.tenantID, head: newHead))
            }
        }
        return result
    }
}
