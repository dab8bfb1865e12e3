import CSC
import Crypto
import Foundation

/// The gateway's own access and refresh tokens: in this process (`TokenStore`), or shared by
/// every instance through `sessions:` in PostgreSQL, so a token issued by one instance works,
/// and is revoked, on all of them.
public protocol SessionTokens: Sendable {
    func issue(tenantID: String, clientID: String, scopes: Set<String>, withRefreshToken: Bool) async throws(CSCError) -> TokenResult
    /// The caller behind an access token, or the CSC 401 a client must see.
    func authenticate(accessToken: String) async throws(CSCError) -> Caller
    /// Rotates a refresh token: the old one stops working. `clientID`, when given, must own it.
    func refresh(_ token: String, clientID: String?) async throws(CSCError) -> TokenResult
    /// A refresh token takes every token of its grant with it; an access token goes alone.
    /// Another client's token is left untouched, silently (RFC 7009).
    func revoke(_ token: String, clientID: String) async throws(CSCError)
}

/// What each gateway SAD has left to sign (count and, under SCAL 2, which hashes): in this
/// process (`SADUsage`), or shared by every instance, so a SAD cannot be spent once per
/// instance. Each step is atomic: concurrent requests with one SAD never overspend it.
public protocol SADBudgets: Sendable {
    /// The id of a SAD about to be issued: the key of its budget here.
    func newSADID() -> String
    /// Takes `hashes` out of the SAD's budget, or refuses without taking anything.
    func consume(_ claims: SADClaims, hashes: [String]) async throws(CSCError)
    /// Gives back what a failed upstream call did not sign.
    func refund(_ claims: SADClaims, hashes: [String]) async
    /// Takes everything a SAD has left, for `extendTransaction`; returns how many signatures that was.
    func retire(_ claims: SADClaims) async throws(CSCError) -> Int
    /// The extension is done: the old SAD stays spent.
    func settle(_ claims: SADClaims) async
    /// The extension failed: the old SAD gets back exactly what it had.
    func restore(_ claims: SADClaims) async
}

extension TokenStore: SessionTokens {}
extension SADUsage: SADBudgets {}

extension SADBudgets {
    public func newSADID() -> String { randomBytes(16).base64URL }
}

extension CSCError {
    /// The shared session store did not answer: nothing is granted on a guess.
    public static let sessionStoreUnavailable = CSCError(
        status: 503, error: "temporarily_unavailable",
        description: "The gateway's session store is unavailable; retry later", headers: ["Retry-After": "1"])
}

extension SADSeal {
    /// A key for another purpose, derived from the SAD key (HKDF-SHA256), so instances that
    /// share the SAD key share it too and no second secret has to be distributed.
    public func derivedKey(purpose: String) -> SymmetricKey {
        HKDF<SHA256>.deriveKey(inputKeyMaterial: key, info: Data("cscgate \(purpose)".utf8), outputByteCount: 32)
    }
}
