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
    ///
    /// The canonical form is the JSON object of those fields with sorted keys, absent optionals
    /// left out, exactly as `JSONValue.serialized()` writes it; it is written here field by field
    /// because building a dictionary per event was the writer's largest cost.
    static func link(previous: Data, seq: Int64, event e: UsageEvent, timeMs: Int64) -> Data {
        var out = [UInt8]()
        out.reserveCapacity(512)
        canonical(seq: seq, event: e, timeMs: timeMs, into: &out)
        var h = SHA256()
        h.update(data: previous)
        out.withUnsafeBytes { h.update(bufferPointer: $0) }
        return Data(h.finalize())
    }

    /// Keys in byte order: client, credential, evidence, hash_algo, id, latency_us, operation,
    /// outcome, reason, request_id, seq, sign_algo, signatures, stage, tenant, time_ms, upstream.
    static func canonical(seq: Int64, event e: UsageEvent, timeMs: Int64, into out: inout [UInt8]) {
        var first = true
        func key(_ k: StaticString) {
            if !first { out.append(UInt8(ascii: ",")) }
            first = false
            out.append(UInt8(ascii: "\""))
            k.withUTF8Buffer { out.append(contentsOf: $0) }
            out.append(UInt8(ascii: "\""))
            out.append(UInt8(ascii: ":"))
        }
        func string(_ k: StaticString, _ v: String?) {
            guard let v else { return }
            key(k)
            writeString(v, into: &out)
        }
        func number(_ k: StaticString, _ v: Int64) {
            key(k)
            let d = Double(v)
            // As JSONValue writes a number: integral below 9e15 as an integer, otherwise as a Double.
            if abs(d) < 9.0e15 { out.append(contentsOf: String(v).utf8) } else { out.append(contentsOf: String(d).utf8) }
        }
        out.append(UInt8(ascii: "{"))
        string("client", e.clientID)
        string("credential", e.credentialID)
        string("evidence", e.evidence)
        string("hash_algo", e.hashAlgorithm)
        string("id", e.id)
        number("latency_us", Int64(e.latencyMicros))
        string("operation", e.operation)
        string("outcome", e.outcome.rawValue)
        string("reason", e.reason)
        string("request_id", e.requestID)
        number("seq", seq)
        string("sign_algo", e.signAlgorithm)
        number("signatures", Int64(e.signatures))
        string("stage", e.stage)
        string("tenant", e.tenantID)
        number("time_ms", timeMs)
        string("upstream", e.upstream)
        out.append(UInt8(ascii: "}"))
    }

    /// JSONValue's string escaping, byte for byte.
    static func writeString(_ s: String, into out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        var s = s
        s.withUTF8 { bytes in
            // Most values need no escaping: copy them whole.
            if !bytes.contains(where: { $0 < 0x20 || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") }) {
                out.append(contentsOf: bytes)
                return
            }
            let hex = Array("0123456789abcdef".utf8)
            for byte in bytes {
                switch byte {
                case UInt8(ascii: "\""): out.append(contentsOf: [92, 34])
                case UInt8(ascii: "\\"): out.append(contentsOf: [92, 92])
                case 0x0A: out.append(contentsOf: [92, UInt8(ascii: "n")])
                case 0x0D: out.append(contentsOf: [92, UInt8(ascii: "r")])
                case 0x09: out.append(contentsOf: [92, UInt8(ascii: "t")])
                case 0..<0x20: out.append(contentsOf: [92, UInt8(ascii: "u"), 48, 48, hex[Int(byte >> 4)], hex[Int(byte & 0xF)]])
                default: out.append(byte)
                }
            }
        }
        out.append(UInt8(ascii: "\""))
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
