import CSC
import Foundation
import GatewayCore
@testable import GatewayServer
import HTTPTypes
import HummingbirdTesting
import NIOCore
import Testing

// The admin API's door: one authentication for every operator route, CSC-style errors, and
// operator secrets that are never echoed.

@Suite("Admin API authentication and routing")
struct AdminAPITests {
    static let secret = "ops-secret-0123456789"
    static let operators = [AdminConfiguration(id: "ops", secretHash: try! SecretHash.make(secret: secret, logN: 10))]

    static func api() -> AdminAPI {
        var api = AdminAPI(operators: operators)
        api.add(.get, "ping") { request in
            FrontDoorResponse(json: JSONObject(["operator": .string(request.operatorID),
                                                "q": .string(request.query["q"] ?? "")]))
        }
        return api
    }

    @Test("a known operator reaches the route, with the query parsed")
    func authenticated() async throws {
        try await ServerFixture().test(admin: Self.api()) { client in
            let r = try await client.execute(uri: "/admin/v1/ping?q=a%20b", method: .get,
                                             headers: [.authorization: "Bearer \(Self.secret)"])
            #expect(r.status == .ok)
            let body = try r.json()
            #expect(body["operator"] == .string("ops"))
            #expect(body["q"] == .string("a b"))
        }
    }

    @Test("no credentials, a client's Basic credentials or a wrong secret get 401 without the secret echoed")
    func refused() async throws {
        try await ServerFixture().test(admin: Self.api()) { client in
            for auth in [nil, basic(Clients.acme.id, Clients.acme.secret), "Bearer wrong-secret-XYZ"] as [String?] {
                var headers: HTTPFields = [:]
                if let auth { headers[.authorization] = auth }
                let r = try await client.execute(uri: "/admin/v1/ping", method: .get, headers: headers)
                #expect(r.status == .unauthorized)
                #expect(r.headers[.wwwAuthenticate]?.hasPrefix("Bearer") == true)
                let body = try r.json()
                #expect(body["error"] != nil && body["error_description"] != nil)
                #expect(!r.text.contains("wrong-secret-XYZ") && !r.text.contains(Clients.acme.secret))
            }
        }
    }

    @Test("an unknown resource is 404 and a wrong method 405 with Allow, both in CSC JSON")
    func routing() async throws {
        try await ServerFixture().test(admin: Self.api()) { client in
            let auth: HTTPFields = [.authorization: "Bearer \(Self.secret)"]
            let missing = try await client.execute(uri: "/admin/v1/nothing", method: .get, headers: auth)
            #expect(missing.status == .notFound)
            #expect(try missing.json()["error"] == .string("invalid_request"))
            let wrong = try await client.execute(uri: "/admin/v1/ping", method: .post, headers: auth)
            #expect(wrong.status == .methodNotAllowed)
            #expect(wrong.headers[.allow] == "GET")
        }
    }

    @Test("with no operators configured, every admin call is refused")
    func noOperators() async throws {
        var api = AdminAPI(operators: [])
        api.add(.get, "ping") { _ in FrontDoorResponse(json: JSONObject([:])) }
        try await ServerFixture().test(admin: api) { client in
            let r = try await client.execute(uri: "/admin/v1/ping", method: .get, headers: [.authorization: "Bearer \(Self.secret)"])
            #expect(r.status == .unauthorized)
        }
    }
}
