import Crypto
import Foundation
import GatewayCore

/// One break in a tenant's chain, named so a reviewer can find the row.
public struct LedgerProblem: Sendable, CustomStringConvertible {
    public let tenant: String
    public let seq: Int64?
    public let eventID: String?
    public let message: String

    public var description: String {
        var where_ = "tenant \(tenant)"
        if let seq { where_ += ", seq \(seq)" }
        if let eventID { where_ += ", event \(eventID)" }
        return "\(where_): \(message)"
    }
}

public struct LedgerVerification: Sendable {
    public var events: [String: Int] = [:]
    public var checkpoints: [String: Int] = [:]
    public var problems: [LedgerProblem] = []
    public var isIntact: Bool { problems.isEmpty }
}

/// Walks every tenant's chain from its first event, recomputing each link, and checks the
/// signed checkpoints against it. The same walk for every backend: it reads through `LedgerStore`.
public enum LedgerVerifier {
    /// Events read per round trip; memory stays bounded whatever the size of the ledger.
    static let page = 5_000

    /// A SQLite ledger file, opened read-only.
    public static func verify(path: String, publicKey: Curve25519.Signing.PublicKey?, tenant: String? = nil) async throws
        -> LedgerVerification {
        try await verify(SQLiteLedgerStore(path: path), publicKey: publicKey, tenant: tenant)
    }

    public static func verify(_ store: any LedgerStore, publicKey: Curve25519.Signing.PublicKey?, tenant only: String? = nil)
        async throws -> LedgerVerification {
        var result = LedgerVerification()
        let tenants = try await store.tenants().filter { only == nil || $0 == only }
        for tenant in tenants {
            var previousHash = ChainHead.genesis
            var expectedSeq: Int64 = 1
            var hashes = [Int64: Data]()
            var count = 0
            var after = Int64.min
            while true {
                let rows = try await store.events(tenant: tenant, after: after, limit: page)
                for row in rows {
                    count += 1
                    let seq = row.seq
                    func problem(_ m: String) {
                        result.problems.append(LedgerProblem(tenant: tenant, seq: seq, eventID: row.event.id, message: m))
                    }
                    if seq != expectedSeq {
                        let missing = seq > expectedSeq ? "events \(expectedSeq)…\(seq - 1) are missing (deleted)" : "sequence goes back (reordered or inserted)"
                        problem(missing)
                    }
                    if row.previousHash != previousHash {
                        problem("does not link to the event before it (an event was inserted, deleted, reordered or edited before it)")
                    }
                    let recomputed = LedgerChain.link(previous: row.previousHash, seq: seq, event: row.event, timeMs: row.timeMs)
                    if recomputed != row.hash {
                        problem("content does not match its hash (the event was edited)")
                    }
                    hashes[seq] = row.hash
                    previousHash = row.hash
                    expectedSeq = seq + 1
                }
                guard rows.count == page, let last = rows.last else { break }
                after = last.seq
            }
            result.events[tenant] = count
            var verified = 0
            for cp in try await store.checkpoints(tenant: tenant) {
                func problem(_ m: String) {
                    result.problems.append(LedgerProblem(tenant: tenant, seq: cp.seq, eventID: nil, message: m))
                }
                if let publicKey {
                    let message = CheckpointSigner.message(tenant: tenant, seq: cp.seq, hash: cp.hash, timeMs: cp.timeMs)
                    if !publicKey.isValidSignature(cp.signature, for: message) {
                        problem("checkpoint signature does not verify with the gateway's key")
                        continue
                    }
                }
                guard let chainHash = hashes[cp.seq] else {
                    problem("checkpoint names an event that is no longer in the ledger (events were deleted)")
                    continue
                }
                if chainHash != cp.hash { problem("checkpoint does not match the chain: events up to here were rewritten") }
                verified += 1
            }
            result.checkpoints[tenant] = verified
        }
        return result
    }
}
