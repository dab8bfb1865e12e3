import CSC
import Foundation
import GatewayCore
import GatewayServer
import Hummingbird
import HTTPTypes
import HummingbirdTesting
import Logging
import Testing

/// Two tenants, no upstream connections: everything the front door decides before a backend
/// is needed (authentication, routing, decoding, tenant isolation, limits) runs for real.
enum Clients {
    static let acme = (id: "acme-app", secret: "acme-app-secret-0001")
    static let acmePercent = (id: "acme-pct", secret: "pa%41ss-word-0001")
    static let globex = (id: "globex-app", secret: "globex-app-secret-0001")

    static let acmeHash = try! SecretHash.make(secret: acme.secret, logN: 10).encoded
    static let acmePercentHash = try! SecretHash.make(secret: acmePercent.secret, logN: 10).encoded
    static let globexHash = try! SecretHash.make(secret: globex.secret, logN: 10).encoded
}

/// The body limit of the test gateway (the smallest the loader accepts).
let maxBodyBytes = 1024

final class ServerFixture: Sendable {
    let directory: URL
    let gateway: Gateway

    /// `acmePolicies`: policy files written to policies/ and attached to tenant acme.
    init(backends: [String: any SigningBackend] = [:], acmePolicies: [String: String] = [:],
         ledger: (any UsageLedger)? = nil) throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("cscgate-server-\(UUID().uuidString)")
        let tenants = directory.appendingPathComponent("tenants")
        try FileManager.default.createDirectory(at: tenants, withIntermediateDirectories: true)
        try Data("""
            listen:
              host: 127.0.0.1
              port: 8443
            publicURL: https://gw.example
            tenants: tenants
            limits:
              maxBodyBytes: \(maxBodyBytes)
            upstreams:
              - name: vendor-a
                baseURL: http://127.0.0.1:9/csc/v1
                version: v1
            """.utf8).write(to: directory.appendingPathComponent("gateway.yaml"))
        try Data("""
            tenant: acme
            clients:
              - id: \(Clients.acme.id)
                secretHash: "\(Clients.acmeHash)"
              - id: \(Clients.acmePercent.id)
                secretHash: "\(Clients.acmePercentHash)"
            credentials:
              - id: acme-rsa
                upstream: vendor-a
                upstreamCredentialID: a/rsa
              - id: acme-ec
                upstream: vendor-a
                upstreamCredentialID: a/ec
            policies: [\(acmePolicies.keys.sorted().joined(separator: ", "))]
            """.utf8).write(to: tenants.appendingPathComponent("acme.yaml"))
        let policies = directory.appendingPathComponent("policies")
        try FileManager.default.createDirectory(at: policies, withIntermediateDirectories: true)
        for (name, text) in acmePolicies { try Data(text.utf8).write(to: policies.appendingPathComponent("\(name).yaml")) }
        try Data("""
            tenant: globex
            clients:
              - id: \(Clients.globex.id)
                secretHash: "\(Clients.globexHash)"
            credentials:
              - id: globex-rsa
                upstream: vendor-a
                upstreamCredentialID: a/globex-rsa
            """.utf8).write(to: tenants.appendingPathComponent("globex.yaml"))
        let loaded = try ConfigurationLoader.load(gatewayFile: directory.appendingPathComponent("gateway.yaml").path)
        gateway = Gateway(configuration: loaded, backends: backends, seal: .randomKey(), ledger: ledger)
    }

    deinit { try? FileManager.default.removeItem(at: directory) }

    /// Runs `body` against the real responder through Hummingbird's in-process test client.
    func test<T: Sendable>(admin: AdminAPI? = nil, _ body: @Sendable (any TestClientProtocol) async throws -> T) async throws -> T {
        var logger = Logger(label: "cscgate-test")
        logger.logLevel = .critical
        return try await GatewayApplication.make(gateway: gateway, admin: admin, logger: logger).test(.router, body)
    }
}

let requestIDHeader = HTTPField.Name("X-Request-ID")!

func basic(_ id: String, _ secret: String) -> String {
    "Basic " + Data("\(id):\(secret)".utf8).base64EncodedString()
}

extension TestClientProtocol {
    func post(_ uri: String, json: String = "{}", authorization: String? = nil,
              headers extra: HTTPFields = [:]) async throws -> TestResponse {
        var headers = extra
        headers[.contentType] = "application/json"
        if let authorization { headers[.authorization] = authorization }
        return try await execute(uri: uri, method: .post, headers: headers, body: ByteBuffer(string: json))
    }

    func postForm(_ uri: String, _ form: String, authorization: String? = nil) async throws -> TestResponse {
        var headers: HTTPFields = [.contentType: "application/x-www-form-urlencoded"]
        if let authorization { headers[.authorization] = authorization }
        return try await execute(uri: uri, method: .post, headers: headers, body: ByteBuffer(string: form))
    }

    /// An access token from auth/login with HTTP Basic.
    func login(_ client: (id: String, secret: String) = Clients.acme, rememberMe: Bool = false) async throws -> TokenResult {
        let r = try await post("/csc/v1/auth/login", json: #"{"rememberMe":\#(rememberMe)}"#,
                               authorization: basic(client.id, client.secret))
        #expect(r.status == .ok)
        return try CSCCodec.v1.decodeTokenResult(r.json())
    }
}

extension TestResponse {
    func json() throws -> JSONObject { try JSONObject(parsing: Data(body.readableBytesView)) }
    var text: String { String(decoding: Data(body.readableBytesView), as: UTF8.self) }
}

/// Invariant 5: every error is a CSC error — the right status, `application/json`, and a body
/// with exactly `error` and a non-empty `error_description`.
func expectCSCError(_ r: TestResponse, status: Int, error: String, description: String? = nil,
                    sourceLocation: SourceLocation = #_sourceLocation) throws {
    #expect(Int(r.status.code) == status, "status of \(r.text)", sourceLocation: sourceLocation)
    #expect(r.headers[.contentType] == "application/json", sourceLocation: sourceLocation)
    let body = try r.json()
    #expect(body.fields.keys.sorted() == ["error", "error_description"], "body: \(r.text)", sourceLocation: sourceLocation)
    #expect(try body.string("error") == error, "body: \(r.text)", sourceLocation: sourceLocation)
    let d = try body.string("error_description") ?? ""
    #expect(!d.isEmpty, sourceLocation: sourceLocation)
    if let description { #expect(d == description, sourceLocation: sourceLocation) }
}
