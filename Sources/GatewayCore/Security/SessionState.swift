import CSC
import Crypto
import Foundation
import Logging

/// The gateway's own access and refresh tokens: in this process (`TokenStore`), or shared by
/// every instance through `sessions:` in PostgreSQL, so a token issued by one instance works,
/// and is revoked, on all of them.
public protocol SessionTokens: Sendable {
    // `logger` is the request's: what a shared store logs about a failure carries the request id.
    func issue(tenantID: String, clientID: String, scopes: Set<String>, withRefreshToken: Bool,
               logger: Logger) async throws(CSCError) -> TokenResult
    /// The caller behind an access token, or the CSC 401 a client must see.
    func authenticate(accessToken: String, logger: Logger) async throws(CSCError) -> Caller
    /// Rotates a refresh token: the old one stops working. `clientID`, when given, must own it.
    func refresh(_ token: String, clientID: String?, logger: Logger) async throws(CSCError) -> TokenResult
    /// A refresh token takes every token of its grant with it; an access token goes alone.
    /// Another client's token is left untouched, silently (RFC 7009).
    func revoke(_ token: String, clientID: String, logger: Logger) async throws(CSCError)
}

/// What each gateway SAD has left to sign (count and, under SCAL 2, which hashes): in this
/// process (`SADUsage`), or shared by every instance, so a SAD cannot be spent once per
/// instance. Each step is atomic: concurrent requests with one SAD never overspend it.
public protocol SADBudgets: Sendable {
    /// The id of a SAD about to be issued: the key of its budget here.
    func newSADID() -> String
    /// Takes `hashes` out of the SAD's budget, or refuses without taking anything.
    func consume(_ claims: SADClaims, hashes: [String], logger: Logger) async throws(CSCError)
    /// Gives back what a failed upstream call did not sign.
    func refund(_ claims: SADClaims, hashes: [String], logger: Logger) async
    /// Takes everything a SAD has left, for `extendTransaction`; returns how many signatures that was.
    func retire(_ claims: SADClaims, logger: Logger) async throws(CSCError) -> Int
    /// The extension is done: the old SAD stays spent.
    func settle(_ claims: SADClaims, logger: Logger) async
    /// The extension failed: the old SAD gets back exactly what it had.
    func restore(_ claims: SADClaims, logger: Logger) async
}

/// In this process nothing can fail to answer, so there is nothing to log.
extension TokenStore: SessionTokens {
    public func issue(tenantID: String, clientID: String, scopes: Set<String>, withRefreshToken: Bool,
                      logger: Logger) -> TokenResult {
        issue(tenantID: tenantID, clientID: clientID, scopes: scopes, withRefreshToken: withRefreshToken)
    }
    public func authenticate(accessToken: String, logger: Logger) throws(CSCError) -> Caller { try authenticate(accessToken: accessToken) }
    public func refresh(_ token: String, clientID: String?, logger: Logger) throws(CSCError) -> TokenResult {
        try refresh(token, clientID: clientID)
    }
    public func revoke(_ token: String, clientID: String, logger: Logger) { revoke(token, clientID: clientID) }
}

extension SADUsage: SADBudgets {
    public func consume(_ claims: SADClaims, hashes: [String], logger: Logger) throws(CSCError) { try consume(claims, hashes: hashes) }
    public func refund(_ claims: SADClaims, hashes: [String], logger: Logger) { refund(claims, hashes: hashes) }
    public func retire(_ claims: SADClaims, logger: Logger) throws(CSCError) -> Int { try retire(claims) }
    public func settle(_ claims: SADClaims, logger: Logger) { settle(claims) }
    public func restore(_ claims: SADClaims, logger: Logger) { restore(claims) }
}

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
