import Crypto
import Foundation
import GatewayCore
import GRDB
import Testing
@testable import Ledger

/// A ledger in a fresh temporary file, with checkpoints every `interval` events.
struct TempLedger {
    let dir: URL
    let path: String
    let signer: CheckpointSigner
    let ledger: SQLiteLedger

    init(interval: Int = 5) throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("ledger-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        path = dir.appendingPathComponent("ledger.sqlite").path
        signer = CheckpointSigner(key: Curve25519.Signing.PrivateKey(), interval: interval)
        ledger = try SQLiteLedger(path: path, checkpoints: signer)
    }

    /// Direct SQL, as an attacker with write access to the file would use it.
    func tamper(_ sql: String) throws {
        let q = try DatabaseQueue(path: path)
        try q.write { try $0.execute(sql: sql) }
    }

    func verify() throws -> LedgerVerification {
        try LedgerVerifier.verify(path: path, publicKey: signer.publicKey)
    }
}

func event(_ n: Int, tenant: String = "acme", outcome: UsageOutcome = .ok, signatures: Int = 1, client: String = "app",
           credential: String = "cred", day: Int = 0) -> UsageEvent {
    UsageEvent(id: UsageEvent.eventID(tenantID: tenant, clientID: client, requestID: "req-\(n)", operation: "signatures/signHash"),
               time: Date(timeIntervalSince1970: 1_800_000_000 + Double(day * 86400 + n)), tenantID: tenant, clientID: client,
               credentialID: credential, upstream: "vendor-a", operation: "signatures/signHash",
               signatures: outcome == .ok ? signatures : 0, outcome: outcome, stage: outcome == .ok ? nil : "sad",
               reason: outcome == .ok ? nil : "SAD expired", latencyMicros: 100, requestID: "req-\(n)")
}

@Suite("Usage ledger on SQLite")
struct LedgerTests {
    @Test("an event is durable and readable once record returns; a retried request id is recorded once")
    func recordsOnce() async throws {
        let t = try TempLedger()
        try await t.ledger.record(event(1))
        try await t.ledger.record(event(1))
        #expect(try await t.ledger.recordedEvent(id: event(1).id)?.signatures == 1)
        let count = try DatabaseQueue(path: t.path).read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM usage_events") }
        #expect(count == 1)
    }

    @Test("concurrent records share commits and keep each tenant's chain contiguous")
    func concurrentGroupCommit() async throws {
        let t = try TempLedger(interval: 100)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for i in 0..<2000 {
                group.addTask { try await t.ledger.record(event(i, tenant: i % 2 == 0 ? "acme" : "globex")) }
            }
            try await group.waitForAll()
        }
        let result = try t.verify()
        #expect(result.isIntact, "\(result.problems)")
        #expect(result.events == ["acme": 1000, "globex": 1000])
        #expect(result.checkpoints == ["acme": 10, "globex": 10])
        let seqs = try DatabaseQueue(path: t.path).read {
            try Int64.fetchAll($0, sql: "SELECT seq FROM usage_events WHERE tenant = 'acme' ORDER BY seq")
        }
        #expect(seqs == Array(1...1000))
    }

    @Test("a reopened ledger continues the chain where it stopped")
    func reopens() async throws {
        let t = try TempLedger()
        for i in 0..<7 { try await t.ledger.record(event(i)) }
        let again = try SQLiteLedger(path: t.path, checkpoints: t.signer)
        for i in 7..<12 { try await again.record(event(i)) }
        let result = try t.verify()
        #expect(result.isIntact, "\(result.problems)")
        #expect(result.events["acme"] == 12)
    }

    enum Tampering: String, CaseIterable, CustomTestStringConvertible {
        case edited, deleted, inserted, reordered, rewrittenAfterEdit
        var testDescription: String { rawValue }
    }

    @Test("ledger verify names the event that was edited, deleted, inserted or reordered", arguments: Tampering.allCases)
    func detectsTampering(_ kind: Tampering) async throws {
        let t = try TempLedger(interval: 4)
        for i in 0..<10 { try await t.ledger.record(event(i)) }
        #expect(try t.verify().isIntact)
        let target = event(5).id
        switch kind {
        case .edited:
            try t.tamper("UPDATE usage_events SET signatures = 0 WHERE seq = 6")
        case .deleted:
            try t.tamper("DELETE FROM usage_events WHERE seq = 6")
        case .inserted:
            try t.tamper("UPDATE usage_events SET seq = seq + 100 WHERE seq >= 6")
            try t.tamper("UPDATE usage_events SET seq = seq - 99 WHERE seq >= 106")
            try t.tamper("""
                INSERT INTO usage_events SELECT tenant, 6, 'forged', time_ms, client, credential, upstream, operation,
                  signatures, sign_algo, hash_algo, outcome, stage, reason, latency_us, request_id, evidence, answer,
                  prev_hash, hash FROM usage_events WHERE seq = 5
                """)
        case .reordered:
            try t.tamper("UPDATE usage_events SET seq = -1 WHERE seq = 6")
            try t.tamper("UPDATE usage_events SET seq = 6 WHERE seq = 7")
            try t.tamper("UPDATE usage_events SET seq = 7 WHERE seq = -1")
        case .rewrittenAfterEdit:
            // Edit, then recompute every later link: only the signed checkpoints can tell.
            try t.tamper("UPDATE usage_events SET signatures = 0 WHERE seq = 6")
            let q = try DatabaseQueue(path: t.path)
            try q.write { db in
                var prev = try Data.fetchOne(db, sql: "SELECT hash FROM usage_events WHERE seq = 5") ?? Data()
                for row in try Row.fetchAll(db, sql: "SELECT * FROM usage_events WHERE seq >= 6 ORDER BY seq") {
                    let seq: Int64 = row["seq"]
                    let h = LedgerChain.link(previous: prev, seq: seq, event: LedgerRow.event(row), timeMs: row["time_ms"])
                    try db.execute(sql: "UPDATE usage_events SET prev_hash = ?, hash = ? WHERE seq = ?", arguments: [prev, h, seq])
                    prev = h
                }
            }
        }
        let result = try t.verify()
        #expect(!result.isIntact)
        let text = result.problems.map(\.description).joined(separator: "\n")
        switch kind {
        case .edited: #expect(text.contains("event \(target)") && text.contains("edited"))
        case .deleted: #expect(text.contains("missing (deleted)"))
        case .inserted: #expect(text.contains("forged") || text.contains("does not link"))
        case .reordered: #expect(text.contains("does not link") || text.contains("edited"))
        case .rewrittenAfterEdit: #expect(text.contains("checkpoint does not match the chain"))
        }
    }

    @Test("a checkpoint signed by another key is reported")
    func foreignCheckpointKey() async throws {
        let t = try TempLedger(interval: 2)
        for i in 0..<4 { try await t.ledger.record(event(i)) }
        let other = Curve25519.Signing.PrivateKey().publicKey
        let result = try LedgerVerifier.verify(path: t.path, publicKey: other)
        #expect(result.problems.contains { $0.message.contains("signature does not verify") })
    }

    @Test("a report's every number matches what was sent; denied and failed are counted, never billed")
    func reportMatchesMix() async throws {
        let t = try TempLedger(interval: 1000)
        var expected: [String: (ok: Int, denied: Int, failed: Int, billed: Int)] = [:]
        var n = 0
        for day in 0..<3 {
            for client in ["app", "batch"] {
                for (outcome, count, sigs) in [(UsageOutcome.ok, 4 + day, 3), (.denied, 2, 0), (.failed, day, 0)] {
                    for _ in 0..<count {
                        try await t.ledger.record(event(n, outcome: outcome, signatures: sigs, client: client, day: day))
                        n += 1
                    }
                    var e = expected[client] ?? (0, 0, 0, 0)
                    switch outcome {
                    case .ok: e.ok += count; e.billed += count * sigs
                    case .denied: e.denied += count
                    case .failed: e.failed += count
                    }
                    expected[client] = e
                }
            }
        }
        try await t.ledger.record(event(9999, tenant: "other", signatures: 50))
        let from = Date(timeIntervalSince1970: 1_800_000_000), to = from.addingTimeInterval(3 * 86400)
        let byClient = try UsageReport.make(path: t.path, tenant: "acme", from: from, to: to, grouping: .client)
        #expect(byClient.lines.map(\.key) == ["app", "batch"])
        for line in byClient.lines {
            let e = try #require(expected[line.key])
            #expect(line.ok == e.ok && line.denied == e.denied && line.failed == e.failed && line.billedSignatures == e.billed)
        }
        #expect(byClient.total.billedSignatures == expected.values.reduce(0) { $0 + $1.billed })
        let byDay = try UsageReport.make(path: t.path, tenant: "acme", from: from, to: to, grouping: .day)
        #expect(byDay.lines.count == 3)
        #expect(byDay.lines[2].billedSignatures == 2 * (4 + 2) * 3)
        // The end is exclusive: the first day alone.
        let firstDay = try UsageReport.make(path: t.path, tenant: "acme", from: from, to: from.addingTimeInterval(86400), grouping: .outcome)
        #expect(firstDay.total.operations == 2 * (4 + 2 + 0))
        #expect(byClient.csv.hasPrefix("client,operations,ok,denied,failed,billed_signatures\n"))
    }

    @Test("CSV fields cannot smuggle spreadsheet formulas or break columns")
    func csvFields() {
        #expect(UsageReport.csvField("=cmd()") == "'=cmd()")
        #expect(UsageReport.csvField("a,b") == "\"a,b\"")
        #expect(UsageReport.csvField("-") == "-")
    }
}
