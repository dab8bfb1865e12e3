import CSC
import Foundation
import GatewayCore
import GatewayServer
import HTTPTypes
import HummingbirdTesting
import Testing

// Policy denials and limit refusals as a client sees them over HTTP.

@Suite("Policies and limits over HTTP")
struct PolicyHTTPTests {
    static let policy = """
        default: allow
        rules:
          - id: no-listing
            when: {operation: credentials/list, client: acme-app}
            effect: deny
            reason: Listing credentials is disabled for this application
          - id: list-rate
            when: {operation: credentials/list}
            effect: limit
            limit: {scope: client, unit: requests, rate: 1, period: 1h, burst: 1}
        """

    @Test("a denial is 403 access_denied with the rule's reason")
    func denial() async throws {
        let fixture = try ServerFixture(acmePolicies: ["acme-rules": Self.policy])
        try await fixture.test { client in
            let token = try await client.login()
            let r = try await client.post("/csc/v1/credentials/list", authorization: "Bearer \(token.accessToken)")
            try expectCSCError(r, status: 403, error: "access_denied",
                               description: "Listing credentials is disabled for this application")
        }
    }

    @Test("a limit refusal is 429 with Retry-After, RateLimit-Policy and RateLimit, naming the limit")
    func refusal() async throws {
        let fixture = try ServerFixture(acmePolicies: ["acme-rules": Self.policy])
        try await fixture.test { client in
            let token = try await client.login(Clients.acmePercent)
            let first = try await client.post("/csc/v2/credentials/list", authorization: "Bearer \(token.accessToken)")
            #expect(first.status == .ok)
            let r = try await client.post("/csc/v2/credentials/list", authorization: "Bearer \(token.accessToken)")
            try expectCSCError(r, status: 429, error: "limit_exceeded")
            #expect(try r.json().string("error_description")?.contains("Limit 'acme-rules/list-rate'") == true)
            // An hour, less the time between the two calls.
            let wait = try #require(Int(r.headers[HTTPField.Name("Retry-After")!] ?? ""))
            #expect((3500...3600).contains(wait))
            #expect(r.headers[HTTPField.Name("RateLimit-Policy")!] == "\"acme-rules/list-rate\";q=1;w=3600")
            #expect(r.headers[HTTPField.Name("RateLimit")!] == "\"acme-rules/list-rate\";r=0;t=\(wait)")
        }
    }
}
