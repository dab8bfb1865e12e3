import Foundation
@testable import GatewayCore
import Testing

@Suite("Usage event ids")
struct UsageEventTests {
    @Test("a request's id is deterministic; each refused or failed attempt has its own, never the request's")
    func attemptIDs() {
        let request = UsageEvent.eventID(tenantID: "acme", clientID: "app", requestID: "r-1", operation: "signatures/signHash")
        #expect(request == UsageEvent.eventID(tenantID: "acme", clientID: "app", requestID: "r-1", operation: "signatures/signHash"))
        let t = Date(timeIntervalSince1970: 1_800_000_000.123456)
        let denied = UsageEvent.attemptID(request, outcome: .denied, time: t)
        #expect(denied == UsageEvent.attemptID(request, outcome: .denied, time: t))
        #expect(denied != request)
        #expect(denied != UsageEvent.attemptID(request, outcome: .failed, time: t))
        #expect(denied != UsageEvent.attemptID(request, outcome: .denied, time: t.addingTimeInterval(0.000_001)))
    }
}
