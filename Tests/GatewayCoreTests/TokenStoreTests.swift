import CSC
import Foundation
@testable import GatewayCore
import Testing

// CSC-API.md §3.3 and §1 auth/revoke: access tokens expire, refresh tokens rotate, revoking a
// refresh token ends its grant, revoking an access token leaves the refresh token alone.

@Suite("TokenStore: the gateway's own access and refresh tokens")
struct TokenStoreTests {
    let clock = FakeClock()
    let store: TokenStore

    init() {
        store = TokenStore(accessLifetime: 3600, refreshLifetime: 86_400, now: clock.source)
    }

    func issue(refresh: Bool = true, client: String = "acme-app") async -> TokenResult {
        await store.issue(tenantID: "acme", clientID: client, scopes: ["service"], withRefreshToken: refresh)
    }

    @Test("an issued access token authenticates as its tenant, client and scopes")
    func issueAndAuthenticate() async throws {
        let t = await issue(refresh: false)
        #expect(t.expiresIn == 3600)
        #expect(t.refreshToken == nil)
        let caller = try await store.authenticate(accessToken: t.accessToken)
        #expect(caller.tenantID == "acme")
        #expect(caller.clientID == "acme-app")
        #expect(caller.scopes == ["service"])
    }

    @Test("tokens are random: two issues never collide")
    func distinctTokens() async {
        let a = await issue(), b = await issue()
        #expect(a.accessToken != b.accessToken)
        #expect(a.refreshToken != b.refreshToken)
    }

    @Test("an access token works until its lifetime, then is 401 expired_token")
    func expiry() async throws {
        let t = await issue(refresh: false)
        clock.advance(3599)
        _ = try await store.authenticate(accessToken: t.accessToken)
        clock.advance(2)
        let error = try await #require(throws: CSCError.self) { try await store.authenticate(accessToken: t.accessToken) }
        #expect(error.status == 401)
        #expect(error.error == "expired_token")
    }

    @Test("an unknown token is 401 invalid_token", arguments: ["cga_unknown", "", "Bearer x"])
    func unknown(_ token: String) async throws {
        let error = try await #require(throws: CSCError.self) { try await store.authenticate(accessToken: token) }
        #expect(error == .invalidToken())
        #expect(error.status == 401)
    }

    @Test("a refresh token is not an access token")
    func refreshTokenIsNotAccess() async throws {
        let t = await issue()
        let refresh = try #require(t.refreshToken)
        await #expect(throws: CSCError.invalidToken()) { try await store.authenticate(accessToken: refresh) }
    }

    @Test("refresh rotates: the new pair works, the old refresh token is refused after use")
    func rotation() async throws {
        let first = await issue()
        let r1 = try #require(first.refreshToken)
        let second = try await store.refresh(r1)
        let r2 = try #require(second.refreshToken)
        #expect(r2 != r1)
        #expect(try await store.authenticate(accessToken: second.accessToken).clientID == "acme-app")
        await #expect(throws: CSCError.invalidGrant("The refresh token is not valid")) { try await store.refresh(r1) }
        _ = try await store.refresh(r2)
    }

    @Test("a refresh token expires")
    func refreshExpiry() async throws {
        let t = await issue()
        clock.advance(86_401)
        await #expect(throws: CSCError.invalidGrant("The refresh token has expired")) {
            try await store.refresh(try #require(t.refreshToken))
        }
    }

    @Test("revoking a refresh token kills every access token of its grant, rotated ones included")
    func revokeRefreshEndsGrant() async throws {
        let first = await issue()
        let second = try await store.refresh(try #require(first.refreshToken))
        let other = await issue()
        await store.revoke(try #require(second.refreshToken), clientID: "acme-app")
        for access in [first.accessToken, second.accessToken] {
            let error = try await #require(throws: CSCError.self) { try await store.authenticate(accessToken: access) }
            #expect(error.status == 401)
        }
        await #expect(throws: CSCError.self) { try await store.refresh(try #require(second.refreshToken)) }
        // Another grant of the same client is untouched.
        _ = try await store.authenticate(accessToken: other.accessToken)
    }

    @Test("a revoked access token is 401 expired_token (CSC: 'expired or has been revoked')")
    func revokedIsExpiredToken() async throws {
        let t = await issue(refresh: false)
        await store.revoke(t.accessToken, clientID: "acme-app")
        let error = try await #require(throws: CSCError.self) { try await store.authenticate(accessToken: t.accessToken) }
        #expect(error.status == 401)
        #expect(error.error == "expired_token")
    }

    @Test("revoking an access token leaves the refresh token usable")
    func revokeAccessKeepsRefresh() async throws {
        let t = await issue()
        await store.revoke(t.accessToken, clientID: "acme-app")
        await #expect(throws: CSCError.self) { try await store.authenticate(accessToken: t.accessToken) }
        let renewed = try await store.refresh(try #require(t.refreshToken))
        _ = try await store.authenticate(accessToken: renewed.accessToken)
    }

    @Test("another client cannot revoke a token (and is not told it exists)")
    func otherClientCannotRevoke() async throws {
        let t = await issue()
        await store.revoke(t.accessToken, clientID: "globex-app")
        await store.revoke(try #require(t.refreshToken), clientID: "globex-app")
        _ = try await store.authenticate(accessToken: t.accessToken)
        _ = try await store.refresh(try #require(t.refreshToken))
    }

    @Test("refresh by another client is refused and does not spend the token")
    func refreshWrongClient() async throws {
        let t = await issue()
        let refresh = try #require(t.refreshToken)
        await #expect(throws: CSCError.invalidGrant("The refresh token is not valid")) {
            try await store.refresh(refresh, clientID: "globex-app")
        }
        _ = try await store.refresh(refresh, clientID: "acme-app")
    }

    @Test("revokeAll drops the tokens of a removed client only")
    func revokeAll() async throws {
        let acme = await issue(client: "acme-app")
        let other = await issue(client: "acme-batch")
        await store.revokeAll { $0.clientID == "acme-app" }
        await #expect(throws: CSCError.self) { try await store.authenticate(accessToken: acme.accessToken) }
        _ = try await store.authenticate(accessToken: other.accessToken)
    }
}
