import CSC
import Foundation
import GatewayCore
import GatewayServer
import HummingbirdTesting
@testable import Ledger
import Testing

/// A signHash's ok event is reserved in the SQLite ledger while the upstream signs; what the
/// ledger holds must still be exactly what clients were answered.
@Suite("Ledger reservations through the front door")
struct ReservationTests {
    let backend = GatedBackend()
    let directory: URL
    let ledger: SQLiteLedger
    let fixture: ServerFixture

    init() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("cscgate-reservations-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        ledger = try SQLiteLedger(path: directory.appendingPathComponent("ledger.sqlite").path)
        fixture = try ServerFixture(backends: ["vendor-a": backend], ledger: ledger)
    }

    private static let twoHashes = #"["\#(Data(repeating: 1, count: 32).base64EncodedString())","\#(Data(repeating: 2, count: 32).base64EncodedString())"]"#

    @Test("a signing its upstream refuses is recorded as failed, durably before the error, and never billed; one that signs is billed once")
    func refusedAfterReservation() async throws {
        let backend = self.backend
        let ledger = self.ledger
        let directory = self.directory
        try await fixture.test { client in
            let auth = "Bearer \(try await client.login().accessToken)"
            let authorized = try await client.post("/csc/v1/credentials/authorize",
                                                   json: #"{"credentialID":"acme-ec","numSignatures":2}"#, authorization: auth)
            let sad = try authorized.json().requiredString("SAD")
            let body = #"{"credentialID":"acme-ec","SAD":"\#(sad)","hash":\#(Self.twoHashes),"signAlgo":"1.2.840.10045.4.3.2"}"#

            backend.failSigning.withLock { $0 = true }
            let refused = try await client.post("/csc/v1/signatures/signHash", json: body, authorization: auth)
            try expectCSCError(refused, status: 502, error: "upstream_error")
            // What a power cut right after that answer would leave: the refusal, and no signing billed.
            let crashed = directory.appendingPathComponent("crashed")
            try FileManager.default.createDirectory(at: crashed, withIntermediateDirectories: true)
            for name in ["ledger.sqlite", "ledger.sqlite-wal", "ledger.sqlite.journal"]
            where FileManager.default.fileExists(atPath: directory.appendingPathComponent(name).path) {
                try FileManager.default.copyItem(at: directory.appendingPathComponent(name), to: crashed.appendingPathComponent(name))
            }
            let restarted = try SQLiteLedger(path: crashed.appendingPathComponent("ledger.sqlite").path)
            let afterCrash = try await restarted.events(tenant: "acme", after: 0, limit: 100).map(\.event)
                .filter { $0.operation == "signatures/signHash" }
            #expect(afterCrash.map(\.outcome) == [.failed])
            #expect(afterCrash.map(\.signatures) == [0])
            await restarted.shutdown()

            // The budget came back with the refusal: the same SAD signs both hashes now.
            backend.failSigning.withLock { $0 = false }
            let signed = try await client.post("/csc/v1/signatures/signHash", json: body, authorization: auth)
            #expect(signed.status == .ok, "\(signed.text)")
        }
        try await ledger.caughtUp()
        let events = try await ledger.events(tenant: "acme", after: 0, limit: 100).map(\.event)
            .filter { $0.operation == "signatures/signHash" }
        #expect(events.map(\.outcome) == [.failed, .ok])
        #expect(events.map(\.signatures) == [0, 2])
        #expect(events[1].latencyMicros > 0, "the stored ok event is the outcome, not the reservation")
        #expect(events.allSatisfy { $0.reason != JournalBacklog.openReservationReason })
        await ledger.shutdown()
        try? FileManager.default.removeItem(at: directory)
    }
}
