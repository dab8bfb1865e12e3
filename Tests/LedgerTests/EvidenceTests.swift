import Crypto
import Foundation
import GatewayCore
import Testing
@testable import Ledger

// Issue 4: the OCSP response a signing relied on is stored once, content-addressed, and the
// usage event refers to it by that address, on both backends.
@Suite("OCSP evidence in the ledger (SQLite and PostgreSQL)")
struct EvidenceTests {
    @Test("a response is stored once under its sha-256 and read back; events carry the address", arguments: Backend.allCases)
    func storedOnce(_ backend: Backend) async throws {
        let t = try await TestLedger.make(backend)
        guard let store = t.ledger as? any EvidenceStore else {
            Issue.record("\(backend) ledger does not keep evidence")
            return
        }
        let der = Data((0..<300).map { UInt8($0 % 251) })
        let address = try await store.storeEvidence(der)
        #expect(address == Data(SHA256.hash(data: der)).map { String(format: "%02x", $0) }.joined())
        #expect(try await store.storeEvidence(der) == address)  // again: same address, no second row
        #expect(try await store.evidence(address: address) == der)
        #expect(try await store.evidence(address: String(repeating: "0", count: 64)) == nil)

        var e = event(1)
        e.evidence = address
        try await t.ledger.record(e)
        #expect(try await t.ledger.recordedEvent(id: e.id)?.evidence == address)
        await t.close()
    }
}
