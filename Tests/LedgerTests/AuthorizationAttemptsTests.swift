import Foundation
import GatewayCore
import Testing
@testable import Ledger

/// PIN and OTP attempts kept beside the ledger: the same contract on both backends, and what
/// only a database gives (surviving a restart, one count for several instances).
@Suite("PIN and OTP attempts in the ledger's database")
struct AuthorizationAttemptsTests {
    static func attempts(_ ledger: any UsageLedger) throws -> any AuthorizationAttempts {
        try #require(ledger as? any AuthorizationAttempts)
    }

    @Test("an attempt is counted before the check and forgiven on success; at the limit it is refused",
          arguments: Backend.allCases)
    func countsAndLocks(_ backend: Backend) async throws {
        let t = try await TestLedger.make(backend)
        let a = try Self.attempts(t.ledger)
        #expect(try await a.reserve("hsm/ec/pin", limit: 3))
        #expect(try await a.accept("hsm/ec/pin", step: nil))
        #expect(try await a.failures("hsm/ec/pin") == 0)
        for _ in 0..<3 { #expect(try await a.reserve("hsm/ec/pin", limit: 3)) }
        #expect(try await a.failures("hsm/ec/pin") == 3)
        #expect(try await a.reserve("hsm/ec/pin", limit: 3) == false)
        #expect(try await a.failures("hsm/ec/pin") == 3, "a refused attempt is not counted")
        #expect(try await a.failures("hsm/other/pin") == 0, "each factor of each credential counts alone")
        try await a.unlock("hsm/ec/pin")
        #expect(try await a.reserve("hsm/ec/pin", limit: 3))
        await t.close()
    }

    @Test("an OTP time step is accepted once; a replay keeps its reserved failure", arguments: Backend.allCases)
    func otpSteps(_ backend: Backend) async throws {
        let t = try await TestLedger.make(backend)
        let a = try Self.attempts(t.ledger)
        #expect(try await a.reserve("hsm/ec/otp", limit: 5))
        #expect(try await a.accept("hsm/ec/otp", step: 1_000))
        #expect(try await a.reserve("hsm/ec/otp", limit: 5))
        #expect(try await a.accept("hsm/ec/otp", step: 1_000) == false)
        #expect(try await a.accept("hsm/ec/otp", step: 999) == false)
        #expect(try await a.failures("hsm/ec/otp") == 1)
        #expect(try await a.reserve("hsm/ec/otp", limit: 5))
        #expect(try await a.accept("hsm/ec/otp", step: 1_001))
        #expect(try await a.failures("hsm/ec/otp") == 0)
        await t.close()
    }

    @Test("a restarted gateway, or a second one on the same ledger, sees the same failures", arguments: Backend.allCases)
    func sharedAndDurable(_ backend: Backend) async throws {
        let t = try await TestLedger.make(backend)
        let a = try Self.attempts(t.ledger)
        for _ in 0..<2 { #expect(try await a.reserve("hsm/ec/pin", limit: 3)) }
        #expect(try await a.accept("hsm/ec/otp", step: 42))
        let other = try await t.another()
        let b = try Self.attempts(other)
        #expect(try await b.failures("hsm/ec/pin") == 2)
        #expect(try await b.reserve("hsm/ec/otp", limit: 3))
        #expect(try await b.accept("hsm/ec/otp", step: 42) == false, "the step accepted by the first instance")
        // Concurrent guesses on both instances: the limit holds across them.
        let granted = try await withThrowingTaskGroup(of: Bool.self) { group in
            for i in 0..<20 {
                let store = i % 2 == 0 ? a : b
                group.addTask { try await store.reserve("hsm/ec/pin", limit: 3) }
            }
            var n = 0
            for try await ok in group where ok { n += 1 }
            return n
        }
        #expect(granted == 1, "2 failures were recorded, so 1 more attempt is allowed before the lock")
        await other.shutdown()
        await t.close()
    }
}

@Suite("PIN and OTP attempts in memory (no ledger)")
struct AttemptsInMemoryTests {
    @Test("the same contract as the ledger's: limit, forgiveness, one use per OTP step, unlock")
    func contract() {
        let a = AttemptsInMemory()
        for _ in 0..<2 { #expect(a.reserve("k", limit: 2)) }
        #expect(a.reserve("k", limit: 2) == false)
        #expect(a.failures("k") == 2)
        a.unlock("k")
        #expect(a.reserve("k", limit: 2))
        #expect(a.accept("k", step: 7))
        #expect(a.failures("k") == 0)
        #expect(a.reserve("k", limit: 2))
        #expect(a.accept("k", step: 7) == false)
        #expect(a.failures("k") == 1)
    }
}
