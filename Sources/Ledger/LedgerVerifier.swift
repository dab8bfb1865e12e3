import Crypto
import Foundation
import GatewayCore
import GRDB

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
/// signed checkpoints against it.
public enum LedgerVerifier {
    public static func verify(path: String, publicKey: Curve25519.Signing.PublicKey?, tenant: String? = nil) throws
        -> LedgerVerification {
        var config = Configuration()
        config.readonly = true
        let queue = try DatabaseQueue(path: path, configuration: config)
        return try queue.read { db in try verify(db, publicKey: publicKey, tenant: tenant) }
    }

    static func verify(_ db: Database, publicKey: Curve25519.Signing.PublicKey?, tenant only: String?) throws -> LedgerVerification {
        var result = LedgerVerification()
        let tenants = try String.fetchAll(db, sql: "SELECT DISTINCT tenant FROM usage_events ORDER BY tenant")
            .filter { only == nil || $0 == only }
        for tenant in tenants {
            var previousHash = ChainHead.genesis
            var expectedSeq: Int64 = 1
            var hashes = [Int64: Data]()
            let rows = try Row.fetchCursor(db, sql: "SELECT * FROM usage_events WHERE tenant = ? ORDER BY seq", arguments: [tenant])
            var count = 0
            while let row = try rows.next() {
                count += 1
                let seq: Int64 = row["seq"]
                let id: String = row["id"]
                let stored: Data = row["hash"]
                let prev: Data = row["prev_hash"]
                func problem(_ m: String) { result.problems.append(LedgerProblem(tenant: tenant, seq: seq, eventID: id, message: m)) }
                if seq != expectedSeq {
                    let missing = seq > expectedSeq ? "events \(expectedSeq)…\(seq - 1) are missing (deleted)" : "sequence goes back (reordered or inserted)"
                    problem(missing)
                }
                if prev != previousHash {
                    problem("does not link to the event before it (an event was inserted, deleted, reordered or edited before it)")
                }
                let event = LedgerRow.event(row)
                let recomputed = LedgerChain.link(previous: prev, seq: seq, event: event, timeMs: row["time_ms"])
                if recomputed != stored {
                    problem("content does not match its hash (the event was edited)")
                }
                hashes[seq] = stored
                previousHash = stored
                expectedSeq = seq + 1
            }
            result.events[tenant] = count
            var verified = 0
            for cp in try Row.fetchAll(db, sql: "SELECT * FROM checkpoints WHERE tenant = ? ORDER BY seq", arguments: [tenant]) {
                let seq: Int64 = cp["seq"]
                let hash: Data = cp["hash"]
                func problem(_ m: String) {
                    result.problems.append(LedgerProblem(tenant: tenant, seq: seq, eventID: nil, message: m))
                }
                if let publicKey {
                    let message = CheckpointSigner.message(tenant: tenant, seq: seq, hash: hash, timeMs: cp["time_ms"])
                    if !publicKey.isValidSignature(cp["signature"] as Data, for: message) {
                        problem("checkpoint signature does not verify with the gateway's key")
                        continue
                    }
                }
                guard let chainHash = hashes[seq] else {
                    problem("checkpoint names an event that is no longer in the ledger (events were deleted)")
                    continue
                }
                if chainHash != hash { problem("checkpoint does not match the chain: events up to here were rewritten") }
                verified += 1
            }
            result.checkpoints[tenant] = verified
        }
        return result
    }
}
