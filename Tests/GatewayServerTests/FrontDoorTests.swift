import CSC
import Foundation
import GatewayCore
@testable import GatewayServer
import HummingbirdTesting
import Testing

// The HTTP surface: routing, limits, request ids, and the rule that every error is CSC JSON.

@Suite("Routing and the HTTP surface")
struct RoutingTests {
    let fixture: ServerFixture
    init() throws { fixture = try ServerFixture() }

    @Test("an unknown method is 404 in CSC JSON", arguments: [
        ("/csc/v1/credentials/nope", "Unknown CSC method 'credentials/nope'"),
        ("/csc/v2/signatures/signEverything", "Unknown CSC method 'signatures/signEverything'"),
        ("/csc/v3/info", "Unknown CSC method '/csc/v3/info'"),
        ("/nope", "Unknown CSC method '/nope'"),
        ("/oauth2/nope", "Unknown CSC method 'oauth2/nope'"),
    ] as [(String, String)])
    func unknownMethod(_ uri: String, _ description: String) async throws {
        try await fixture.test { client in
            let token = try await client.login()
            let r = try await client.post(uri, authorization: "Bearer \(token.accessToken)")
            try expectCSCError(r, status: 404, error: "invalid_request", description: description)
        }
    }

    @Test("methods cscgate does not offer are 501 not_implemented", arguments: [
        "/csc/v2/signatures/signDoc", "/csc/v1/signatures/signDoc", "/csc/v2/signatures/signPolling",
        "/csc/v2/credentials/authorizeCheck", "/oauth2/authorize", "/oauth2/pushed_authorize",
    ])
    func notOffered(_ uri: String) async throws {
        try await fixture.test { client in
            let token = try await client.login()
            let r = try await client.post(uri, json: #"{"credentialID":"acme-rsa"}"#, authorization: "Bearer \(token.accessToken)")
            try expectCSCError(r, status: 501, error: "not_implemented")
        }
    }

    @Test("the OTP trigger of the other version is refused with the name to use", arguments: [
        ("/csc/v1/credentials/getChallenge", "credentials/getChallenge is not part of CSC v1; use credentials/sendOTP"),
        ("/csc/v2/credentials/sendOTP", "credentials/sendOTP is not part of CSC v2; use credentials/getChallenge"),
    ] as [(String, String)])
    func otpTriggerOfOtherVersion(_ uri: String, _ description: String) async throws {
        try await fixture.test { client in
            let token = try await client.login()
            let r = try await client.post(uri, json: #"{"credentialID":"acme-rsa"}"#, authorization: "Bearer \(token.accessToken)")
            try expectCSCError(r, status: 400, error: "invalid_request", description: description)
        }
    }

    @Test("a body that is not JSON is 400 'The request body is not valid JSON'", arguments: [
        "{", "credentialID=acme-rsa", #"{"maxResults":}"#,
    ])
    func malformedJSON(_ body: String) async throws {
        try await fixture.test { client in
            let token = try await client.login()
            let r = try await client.post("/csc/v1/credentials/list", json: body, authorization: "Bearer \(token.accessToken)")
            try expectCSCError(r, status: 400, error: "invalid_request", description: "The request body is not valid JSON")
        }
    }

    @Test("a JSON array body is 400")
    func arrayBody() async throws {
        try await fixture.test { client in
            let token = try await client.login()
            let r = try await client.post("/csc/v1/credentials/list", json: "[]", authorization: "Bearer \(token.accessToken)")
            try expectCSCError(r, status: 400, error: "invalid_request", description: "The request body must be a JSON object")
        }
    }

    @Test("a body over maxBodyBytes is 413, with or without a token", arguments: [true, false])
    func bodyTooLarge(_ withToken: Bool) async throws {
        try await fixture.test { client in
            let auth = withToken ? "Bearer \(try await client.login().accessToken)" : nil
            let padding = String(repeating: "x", count: maxBodyBytes + 1)
            let r = try await client.post("/csc/v1/credentials/list", json: #"{"clientData":"\#(padding)"}"#, authorization: auth)
            try expectCSCError(r, status: 413, error: "invalid_request", description: "The request body exceeds \(maxBodyBytes) bytes")
        }
    }

    @Test("a body just under the limit is read")
    func bodyUnderLimit() async throws {
        try await fixture.test { client in
            let token = try await client.login()
            let json = #"{"clientData":""}"#
            let padding = String(repeating: "x", count: maxBodyBytes - json.utf8.count)
            let r = try await client.post("/csc/v1/credentials/list", json: #"{"clientData":"\#(padding)"}"#,
                                          authorization: "Bearer \(token.accessToken)")
            #expect(r.status == .ok)
        }
    }

    @Test("a CSC method called with GET is 405 with Allow: POST", arguments: [
        "/csc/v1/info", "/csc/v2/credentials/list", "/oauth2/token",
    ])
    func getIs405(_ uri: String) async throws {
        try await fixture.test { client in
            let r = try await client.execute(uri: uri, method: .get)
            try expectCSCError(r, status: 405, error: "invalid_request")
            #expect(r.headers[.allow] == "POST")
        }
    }

    @Test("GET /health answers ok")
    func health() async throws {
        try await fixture.test { client in
            let r = try await client.execute(uri: "/health", method: .get)
            #expect(r.status == .ok)
            #expect(try r.json().string("status") == "ok")
        }
    }

    @Test("a sane X-Request-ID is echoed", arguments: ["req-42", "A.b_c-1", String(repeating: "z", count: 64)])
    func requestIDEchoed(_ id: String) async throws {
        try await fixture.test { client in
            let r = try await client.post("/csc/v1/info", headers: [requestIDHeader: id])
            #expect(r.headers[requestIDHeader] == id)
        }
    }

    @Test("request ids the gateway makes are distinct lower-case version-4 UUIDs")
    func madeRequestIDs() {
        let ids = (0..<1000).map { _ in GatewayResponder.madeRequestID() }
        #expect(Set(ids).count == ids.count)
        for id in ids.prefix(50) {
            let uuid = try? #require(UUID(uuidString: id))
            #expect(id == id.lowercased() && id.count == 36)
            #expect(uuid.map { $0.uuid.6 >> 4 } == 4, "version nibble")
            #expect(uuid.map { $0.uuid.8 >> 6 } == 2, "RFC 4122 variant")
        }
    }

    @Test("an unsafe or absent X-Request-ID is replaced by a fresh one", arguments: [
        "has space", "semi;colon", "quote\"", String(repeating: "z", count: 65), "ünïcode", "", nil,
    ] as [String?])
    func requestIDReplaced(_ offered: String?) async throws {
        try await fixture.test { client in
            let r = try await client.post("/csc/v1/info", headers: offered.map { [requestIDHeader: $0] } ?? [:])
            let id = try #require(r.headers[requestIDHeader])
            #expect(id != offered)
            #expect(UUID(uuidString: id) != nil)
        }
    }

    @Test("the request id is also on error responses")
    func requestIDOnErrors() async throws {
        try await fixture.test { client in
            let r = try await client.post("/csc/v1/credentials/list", headers: [requestIDHeader: "trace-7"])
            #expect(r.status == .unauthorized)
            #expect(r.headers[requestIDHeader] == "trace-7")
        }
    }

    @Test("info needs no token and states the version it speaks", arguments: [("v1", "1.0.4.0"), ("v2", "2.0.0.2")])
    func info(_ version: String, _ specs: String) async throws {
        try await fixture.test { client in
            let r = try await client.post("/csc/\(version)/info")
            #expect(r.status == .ok)
            let o = try r.json()
            #expect(try o.string("specs") == specs)
            #expect(try o.stringArray("methods")?.contains("signatures/signHash") == true)
        }
    }
}

@Suite("Credentials and tenant isolation through the front door")
struct CredentialsTests {
    let fixture: ServerFixture
    init() throws { fixture = try ServerFixture() }

    @Test("credentials/list returns the caller's tenant's ids, in configuration order", arguments: ["v1", "v2"])
    func listOwnTenant(_ version: String) async throws {
        try await fixture.test { client in
            let acme = try await client.login(Clients.acme)
            let globex = try await client.login(Clients.globex)
            let a = try await client.post("/csc/\(version)/credentials/list", authorization: "Bearer \(acme.accessToken)")
            #expect(a.status == .ok)
            #expect(try a.json().stringArray("credentialIDs") == ["acme-rsa", "acme-ec"])
            let g = try await client.post("/csc/\(version)/credentials/list", authorization: "Bearer \(globex.accessToken)")
            #expect(try g.json().stringArray("credentialIDs") == ["globex-rsa"])
        }
    }

    @Test("v1 paging: maxResults and an opaque pageToken walk the list")
    func v1Paging() async throws {
        try await fixture.test { client in
            let auth = "Bearer \(try await client.login().accessToken)"
            let first = try await client.post("/csc/v1/credentials/list", json: #"{"maxResults":1}"#, authorization: auth)
            let page1 = try first.json()
            #expect(try page1.stringArray("credentialIDs") == ["acme-rsa"])
            let next = try #require(try page1.string("nextPageToken"))
            let second = try await client.post("/csc/v1/credentials/list", json: #"{"maxResults":1,"pageToken":"\#(next)"}"#,
                                               authorization: auth)
            let page2 = try second.json()
            #expect(try page2.stringArray("credentialIDs") == ["acme-ec"])
            #expect(try page2.string("nextPageToken") == nil)
            let bad = try await client.post("/csc/v1/credentials/list", json: #"{"pageToken":"forged"}"#, authorization: auth)
            try expectCSCError(bad, status: 400, error: "invalid_request", description: "Invalid parameter pageToken")
        }
    }

    @Test("another tenant's credential id is 'Invalid parameter credentialID', as if it did not exist", arguments: [
        ("/csc/v1/credentials/info", #"{"credentialID":"globex-rsa"}"#),
        ("/csc/v2/credentials/info", #"{"credentialID":"globex-rsa"}"#),
        ("/csc/v1/credentials/authorize", #"{"credentialID":"globex-rsa","numSignatures":1}"#),
        ("/csc/v1/credentials/info", #"{"credentialID":"does-not-exist"}"#),
        ("/csc/v1/signatures/signHash",
         #"{"credentialID":"globex-rsa","SAD":"gsad1.x","hash":["\#(Data(count: 32).base64EncodedString())"],"signAlgo":"1.2.840.113549.1.1.11"}"#),
        ("/csc/v1/credentials/sendOTP", #"{"credentialID":"globex-rsa"}"#),
    ] as [(String, String)])
    func otherTenantsCredential(_ uri: String, _ body: String) async throws {
        try await fixture.test { client in
            let token = try await client.login(Clients.acme)
            let r = try await client.post(uri, json: body, authorization: "Bearer \(token.accessToken)")
            try expectCSCError(r, status: 400, error: "invalid_request", description: "Invalid parameter credentialID")
        }
    }

    @Test("a userID is refused: credentials belong to the tenant")
    func userIDRefused() async throws {
        try await fixture.test { client in
            let token = try await client.login()
            let r = try await client.post("/csc/v1/credentials/list", json: #"{"userID":"someone"}"#,
                                          authorization: "Bearer \(token.accessToken)")
            try expectCSCError(r, status: 400, error: "invalid_request")
        }
    }

    @Test("a request error comes back with the client's own version's field names")
    func errorsInClientVersion() async throws {
        try await fixture.test { client in
            let auth = "Bearer \(try await client.login().accessToken)"
            let v1 = try await client.post("/csc/v1/signatures/signHash", json: #"{"credentialID":"acme-rsa","SAD":"s","hash":[],"signAlgo":"1.2.840.10045.4.3.2"}"#,
                                           authorization: auth)
            try expectCSCError(v1, status: 400, error: "invalid_request", description: "Empty hash array")
            let v2 = try await client.post("/csc/v2/signatures/signHash", json: #"{"credentialID":"acme-rsa","SAD":"s","hash":["AA=="],"signAlgo":"1.2.840.10045.4.3.2"}"#,
                                           authorization: auth)
            try expectCSCError(v2, status: 400, error: "invalid_request", description: "Parameter hash is not part of CSC v2; send hashes")
        }
    }
}
