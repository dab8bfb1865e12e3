import CSC
import Foundation
@testable import GatewayCore
import Logging
import Testing
@testable import Ledger

// Concurrency caps shared through PostgreSQL: two `Limits` on one store stand for two gateway
// instances. The store is the real server `make test` starts.

private let context = OperationContext(requestID: "shared-counters-test", logger: Logger(label: "shared-counters-test"))

private func facts(_ credential: String) -> OperationFacts {
    OperationFacts(tenant: "acme", client: "acme-app", operation: "signatures/signHash", credential: credential,
                   upstream: "vendor-a", time: Date())
}

private let cap = LimitSpec(name: "p/vendor-account", scope: .upstream, kind: .concurrency(3))

@Suite("Shared concurrency caps (PostgreSQL)")
struct SharedCountersTests {
    @Test("24 concurrent admissions on two instances against a cap of 3 let exactly 3 in; finishing frees them")
    func exactAcrossInstances() async throws {
        let store = try await PostgresCounterStore(settings: try Backend.postgresSettings())
        let instances = [Limits(store: store, timeout: 5), Limits(store: store, timeout: 5)]
        let outcomes = await withTaskGroup(of: Result<Limits.Admission, CSCError>.self) { group in
            for i in 0..<24 {
                group.addTask {
                    do throws(CSCError) {
                        return .success(try await instances[i % 2].admit([cap], facts: facts("c\(i)"), signatures: 1,
                                                                         plan: nil, failMode: .closed, context))
                    } catch {
                        return .failure(error)
                    }
                }
            }
            return await group.reduce(into: []) { $0.append($1) }
        }
        let admitted = outcomes.compactMap { try? $0.get() }
        let refusals = outcomes.compactMap { if case .failure(let e) = $0 { e } else { nil } }
        #expect(admitted.count == 3)
        #expect(refusals.count == 21)
        #expect(refusals.allSatisfy { $0.status == 429 && $0.errorDescription.contains("p/vendor-account")
            && $0.errorDescription.contains("already in flight") })

        for a in admitted { a.finish() }
        // Release is a call of its own: wait until the permits are back, then all three fit again.
        var again = [Limits.Admission]()
        for attempt in 0..<50 where again.count < 3 {
            if let a = try? await instances[attempt % 2].admit([cap], facts: facts("again"), signatures: 1, plan: nil,
                                                               failMode: .closed, context) {
                again.append(a)
            } else {
                try await Task.sleep(for: .milliseconds(50))
            }
        }
        #expect(again.count == 3)
        await store.shutdown()
    }

    @Test("permits of an instance that died lapse after their lease, and the cap opens again")
    func leaseLapses() async throws {
        let store = try await PostgresCounterStore(settings: try Backend.postgresSettings())
        let dying = Limits(store: store, timeout: 5, permitLease: 1)
        let survivor = Limits(store: store, timeout: 5, permitLease: 1)
        // Taken and never finished, as by a process killed mid-call.
        for i in 0..<3 {
            _ = try await dying.admit([cap], facts: facts("d\(i)"), signatures: 1, plan: nil, failMode: .closed, context)
        }
        await #expect(throws: CSCError.self) {
            _ = try await survivor.admit([cap], facts: facts("s"), signatures: 1, plan: nil, failMode: .closed, context)
        }
        try await Task.sleep(for: .milliseconds(1300))
        let after = try await survivor.admit([cap], facts: facts("s"), signatures: 1, plan: nil, failMode: .closed, context)
        after.finish()
        await store.shutdown()
    }
}
