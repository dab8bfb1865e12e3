import CSC
import Crypto
import Foundation
import GatewayCore
@testable import GatewayServer
import HTTPTypes
import HummingbirdTesting
import Ledger
import Logging
import NIOCore
import Testing

// Usage over HTTP: operators see every tenant, a tenant's client its own usage, a reseller's
// client its sub-tenants' too and never another reseller's. Every mistake is a CSC error.

final class UsageFixture: Sendable {
    static let adminSecret = "usage-admin-secret-0001"
    static let clients = ["r1", "a", "r2", "c"].map { (tenant: $0, id: "\($0)-app", secret: "\($0)-app-secret-0001") }
    static let january = Date(timeIntervalSince1970: 1_798_761_600)  // 2027-01-01

    let directory: URL
    let gateway: Gateway
    let ledger: SQLiteLedger
    let signer = CheckpointSigner(key: Curve25519.Signing.PrivateKey(), interval: 2)
    /// Events recorded per tenant: 3 ok (2 signatures each), 1 denied with an injected reason.
    let perTenant = 4

    init() async throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("cscgate-usage-\(UUID().uuidString)")
        let tenants = directory.appendingPathComponent("tenants")
        try FileManager.default.createDirectory(at: tenants, withIntermediateDirectories: true)
        let adminHash = try SecretHash.make(secret: Self.adminSecret, logN: 10).encoded
        try Data("""
            listen:
              host: 127.0.0.1
              port: 8443
            publicURL: https://gw.example
            tenants: tenants
            upstreams:
              - name: vendor-a
                baseURL: http://127.0.0.1:9/csc/v1
                version: v1
            admin:
              operators:
                - id: billing
                  secretHash: "\(adminHash)"
            """.utf8).write(to: directory.appendingPathComponent("gateway.yaml"))
        let parents = ["a": "r1", "c": "r2"]
        for c in Self.clients {
            let hash = try SecretHash.make(secret: c.secret, logN: 10).encoded
            var text = """
                tenant: \(c.tenant)
                clients:
                  - id: \(c.id)
                    secretHash: "\(hash)"
                    scopes: [service]
                credentials: []

                """
            if let p = parents[c.tenant] { text += "parent: \(p)\n" }
            if c.tenant == "a" { text += "plan:\n  currency: EUR\n  monthlyFee: 5\n  includedSignatures: 4\n  pricePerSignature: 0.10\n  overagePrice: 0.25\n" }
            try Data(text.utf8).write(to: tenants.appendingPathComponent("\(c.tenant).yaml"))
        }
        let loaded = try ConfigurationLoader.load(gatewayFile: directory.appendingPathComponent("gateway.yaml").path)
        ledger = try SQLiteLedger(path: directory.appendingPathComponent("ledger.sqlite").path, checkpoints: signer)
        gateway = Gateway(configuration: loaded, backends: [:], seal: .randomKey(), ledger: ledger)
        for (k, c) in Self.clients.enumerated() {
            for i in 0..<perTenant {
                let ok = i < 3
                try await ledger.record(UsageEvent(
                    id: UsageEvent.eventID(tenantID: c.tenant, clientID: c.id, requestID: "r\(i)", operation: "signatures/signHash"),
                    time: Self.january.addingTimeInterval(Double(k * 86400 + i * 60)), tenantID: c.tenant, clientID: c.id,
                    credentialID: "cred", upstream: "vendor-a", operation: "signatures/signHash", signatures: ok ? 2 : 0,
                    outcome: ok ? .ok : .denied, stage: ok ? nil : "sad", reason: ok ? nil : "bad <b>SAD</b>",
                    requestID: "r\(i)"))
            }
        }
    }

    deinit { try? FileManager.default.removeItem(at: directory) }

    func test<T: Sendable>(_ body: @Sendable (any TestClientProtocol) async throws -> T) async throws -> T {
        var logger = Logger(label: "cscgate-test")
        logger.logLevel = .critical
        let usage = UsageAPI(store: ledger, gateway: gateway, publicKey: signer.publicKey)
        return try await GatewayApplication.make(gateway: gateway, usage: usage, logger: logger).test(.router, body)
    }
}

extension TestClientProtocol {
    func get(_ uri: String, bearer: String?) async throws -> TestResponse {
        var headers: HTTPFields = [:]
        if let bearer { headers[.authorization] = "Bearer \(bearer)" }
        return try await execute(uri: uri, method: .get, headers: headers)
    }

    func token(_ tenant: String) async throws -> String {
        let c = try #require(UsageFixture.clients.first { $0.tenant == tenant })
        return try await login((c.id, c.secret)).accessToken
    }
}

extension TestResponse {
    func tenantsOfEvents() throws -> Set<String> {
        guard case .array(let events)? = try json()["events"] else { return [] }
        return Set(events.compactMap { if case .object(let o) = $0, case .string(let t)? = o["tenant"] { t } else { nil } })
    }
}

@Suite("Usage API: admin, tenant endpoint, reseller scope")
struct UsageAPITests {
    static let admin = UsageFixture.adminSecret

    @Test("operators list every tenant's events, filter them and page through them with a cursor")
    func adminListing() async throws {
        let f = try await UsageFixture()
        try await f.test { client in
            let all = try await client.get("/admin/v1/usage", bearer: Self.admin)
            #expect(all.status == .ok)
            #expect(try all.tenantsOfEvents() == ["r1", "a", "r2", "c"])
            #expect(!all.text.contains("answer"))
            let denied = try await client.get("/admin/v1/usage?tenant=c&outcome=denied", bearer: Self.admin)
            #expect(try denied.tenantsOfEvents() == ["c"])
            guard case .array(let d)? = try denied.json()["events"] else { Issue.record("no events"); return }
            #expect(d.count == 1)
            // Pages of 3 over 16 events: 6 pages, every event once.
            var ids = [String](), cursor: String? = nil, pages = 0
            repeat {
                let r = try await client.get("/admin/v1/usage?limit=3" + (cursor.map { "&cursor=\($0)" } ?? ""), bearer: Self.admin)
                let body = try r.json()
                guard case .array(let events)? = body["events"] else { break }
                ids += events.compactMap { if case .object(let o) = $0, case .string(let id)? = o["id"] { id } else { nil } }
                cursor = try body.string("next_cursor")
                pages += 1
            } while cursor != nil && pages < 20
            #expect(ids.count == 16 && Set(ids).count == 16)
            #expect(pages == 6)
        }
    }

    @Test("bad input is a CSC error with the right status, never a 500", arguments: [
        ("/admin/v1/usage?from=yesterday", 400), ("/admin/v1/usage?from=2027-02-01&to=2027-01-01", 400),
        ("/admin/v1/usage?outcome=maybe", 400), ("/admin/v1/usage?limit=0", 400), ("/admin/v1/usage?limit=abc", 400),
        ("/admin/v1/usage?cursor=bm9wZQ", 400), ("/admin/v1/usage?tenant=nobody", 404), ("/admin/v1/usage?colour=red", 400),
        ("/admin/v1/usage?include_subtenants=true", 400), ("/admin/v1/reports?tenant=a&from=2027-01-01", 400),
        ("/admin/v1/reports?tenant=a&from=2027-01-01&to=2027-02-01&format=pdf", 400),
        ("/admin/v1/reports?tenant=a&from=2027-01-01&to=2027-02-01&group_by=colour", 400),
        ("/admin/v1/reports?from=2027-01-01&to=2027-02-01", 400), ("/admin/v1/usage/export?from=2027-02-30", 400),
    ])
    func badInput(_ uri: String, _ status: Int) async throws {
        let f = try await UsageFixture()
        try await f.test { client in
            let r = try await client.get(uri, bearer: Self.admin)
            try expectCSCError(r, status: status, error: "invalid_request")
        }
    }

    @Test("a reseller's report covers its sub-tenants with their invoice lines, as JSON, CSV and HTML")
    func adminReports() async throws {
        let f = try await UsageFixture()
        try await f.test { client in
            let base = "/admin/v1/reports?tenant=r1&include_subtenants=true&from=2027-01-01&to=2027-02-01"
            let json = try await client.get(base + "&group_by=client", bearer: Self.admin)
            #expect(json.status == .ok)
            let object = try #require(try JSONSerialization.jsonObject(with: Data(json.body.readableBytesView)) as? [String: Any])
            #expect((object["total"] as? [String: Any])?["billed_signatures"] as? Int == 6)
            let subs = try #require(object["subtenants"] as? [[String: Any]])
            #expect(subs.map { $0["tenant"] as? String } == ["a"])
            let months = try #require((subs[0]["invoice"] as? [String: Any])?["months"] as? [[String: Any]])
            // 6 signatures: 4 included at 0.10, 2 over at 0.25, plus the 5.00 fee.
            #expect(months.map { $0["total"] as? String } == ["5.90"])
            let csv = try await client.get(base + "&format=csv", bearer: Self.admin)
            #expect(csv.headers[.contentType] == "text/csv; charset=utf-8")
            #expect(csv.text.contains("a,2027-01,EUR,overage_signatures,2,0.25,0.50\n"))
            let html = try await client.get(base + "&format=html", bearer: Self.admin)
            #expect(html.headers[.contentType] == "text/html; charset=utf-8")
            #expect(html.text.contains("bad &lt;b&gt;SAD&lt;/b&gt;") && !html.text.contains("<b>SAD"))
            #expect(html.text.contains("Intact: 4 events"))
        }
    }

    @Test("a tenant's client reads its own usage with its access token; a reseller's also its sub-tenants'")
    func tenantEndpoint() async throws {
        let f = try await UsageFixture()
        try await f.test { client in
            let r1 = try await client.token("r1")
            #expect(try await client.get("/tenant/v1/usage", bearer: r1).tenantsOfEvents() == ["r1"])
            #expect(try await client.get("/tenant/v1/usage?include_subtenants=true", bearer: r1).tenantsOfEvents() == ["r1", "a"])
            #expect(try await client.get("/tenant/v1/usage?tenant=a", bearer: r1).tenantsOfEvents() == ["a"])
            let a = try await client.token("a")
            #expect(try await client.get("/tenant/v1/usage?include_subtenants=true", bearer: a).tenantsOfEvents() == ["a"])
            let report = try await client.get("/tenant/v1/reports?from=2027-01-01&to=2027-02-01&format=csv", bearer: a)
            #expect(report.text.hasPrefix("tenant,day,operations,ok,denied,failed,billed_signatures\na,2027-01-02,4,3,1,0,6\n"))
            let export = try await client.get("/tenant/v1/usage/export?include_subtenants=true", bearer: r1)
            #expect(export.headers[.contentType] == "application/x-ndjson")
            let lines = export.text.split(separator: "\n")
            #expect(lines.count == 8)
            #expect(lines.allSatisfy { $0.contains("\"subject\":\"r1\"") || $0.contains("\"subject\":\"a\"") })
            #expect(try await client.get("/tenant/v1/usage/export?include_subtenants=true", bearer: r1).text == export.text)
        }
    }

    @Test("a reseller cannot read another reseller's tenants, nor a sub-tenant its reseller", arguments: [
        ("r1", "c"), ("r1", "r2"), ("r2", "a"), ("r2", "r1"), ("a", "r1"), ("c", "r2"),
    ])
    func resellerIsolation(_ reader: String, _ target: String) async throws {
        let f = try await UsageFixture()
        try await f.test { client in
            let token = try await client.token(reader)
            for path in ["usage", "usage/export", "reports"] {
                let r = try await client.get("/tenant/v1/\(path)?tenant=\(target)&from=2027-01-01&to=2027-02-01", bearer: token)
                // The same answer as for a tenant that does not exist.
                try expectCSCError(r, status: 404, error: "invalid_request", description: "Unknown tenant '\(target)'")
            }
        }
    }

    @Test("without a valid access token the tenant endpoint is 401; admin secrets do not open it")
    func tenantAuthentication() async throws {
        let f = try await UsageFixture()
        try await f.test { client in
            for bearer in [nil, "not-a-token", Self.admin] as [String?] {
                let r = try await client.get("/tenant/v1/usage", bearer: bearer)
                try expectCSCError(r, status: 401, error: "invalid_token")
                #expect(!r.text.contains(Self.admin))
            }
            let token = try await client.token("a")
            try expectCSCError(try await client.get("/tenant/v1/nothing", bearer: token), status: 404, error: "invalid_request")
            let admin = try await client.get("/admin/v1/usage", bearer: token)
            #expect(admin.status == .unauthorized)
        }
    }
}
