/// Every failure a client sees: an HTTP status and the CSC body `{error, error_description}`.
///
/// The description is written for the integrator and must never carry a secret (PIN, OTP,
/// SAD, token) or an upstream's internals.
public struct CSCError: Error, Sendable, Equatable, CustomStringConvertible {
    public let status: Int
    public let error: String
    public let errorDescription: String
    /// Extra response headers, e.g. `WWW-Authenticate` or `Retry-After`.
    public let headers: [String: String]

    public init(status: Int, error: String, description: String, headers: [String: String] = [:]) {
        self.status = status
        self.error = error
        self.errorDescription = description
        self.headers = headers
    }

    public var description: String { "\(status) \(error): \(errorDescription)" }

    public var body: JSONValue {
        .object(["error": .string(error), "error_description": .string(errorDescription)])
    }

    public static func invalidRequest(_ d: String) -> CSCError {
        CSCError(status: 400, error: "invalid_request", description: d)
    }
    public static func invalidToken(_ d: String = "The access token is not valid") -> CSCError {
        CSCError(status: 401, error: "invalid_token", description: d,
                 headers: ["WWW-Authenticate": "Bearer error=\"invalid_token\""])
    }
    public static func expiredToken(_ d: String = "The access token has expired or was revoked") -> CSCError {
        CSCError(status: 401, error: "expired_token", description: d,
                 headers: ["WWW-Authenticate": "Bearer error=\"invalid_token\""])
    }
    public static func insufficientScope(_ d: String) -> CSCError {
        CSCError(status: 403, error: "insufficient_scope", description: d)
    }
    public static func authenticationError(_ d: String = "Authentication failed") -> CSCError {
        CSCError(status: 400, error: "authentication_error", description: d)
    }
    public static func invalidClient(_ d: String = "Client authentication failed") -> CSCError {
        CSCError(status: 401, error: "invalid_client", description: d,
                 headers: ["WWW-Authenticate": "Basic realm=\"cscgate\""])
    }
    public static func invalidGrant(_ d: String) -> CSCError {
        CSCError(status: 400, error: "invalid_grant", description: d)
    }
    public static func unsupportedGrantType(_ d: String) -> CSCError {
        CSCError(status: 400, error: "unsupported_grant_type", description: d)
    }
    public static func invalidPIN(_ d: String = "The PIN is not correct") -> CSCError {
        CSCError(status: 400, error: "invalid_pin", description: d)
    }
    public static func invalidOTP(_ d: String = "The OTP is not correct") -> CSCError {
        CSCError(status: 400, error: "invalid_otp", description: d)
    }
    public static func notImplemented(_ d: String) -> CSCError {
        CSCError(status: 501, error: "not_implemented", description: d)
    }
    public static func unknownMethod(_ path: String) -> CSCError {
        CSCError(status: 404, error: "invalid_request", description: "Unknown CSC method '\(path)'")
    }
    public static func bodyTooLarge(limit: Int) -> CSCError {
        CSCError(status: 413, error: "invalid_request", description: "The request body exceeds \(limit) bytes")
    }
    /// An upstream answered something the gateway cannot use (5xx, garbage, unknown mapping).
    public static func upstreamFailed(_ upstream: String, _ d: String) -> CSCError {
        CSCError(status: 502, error: "upstream_error", description: "Upstream '\(upstream)' failed: \(d)")
    }
    /// An upstream could not be reached or did not answer in time.
    public static func upstreamUnavailable(_ upstream: String, _ d: String) -> CSCError {
        CSCError(status: 503, error: "temporarily_unavailable", description: "Upstream '\(upstream)' is unavailable: \(d)",
                 headers: ["Retry-After": "5"])
    }
    public static func upstreamTimeout(_ upstream: String, seconds: Double) -> CSCError {
        CSCError(status: 504, error: "temporarily_unavailable",
                 description: "Upstream '\(upstream)' did not answer within \(formatSeconds(seconds)) s",
                 headers: ["Retry-After": "5"])
    }
    public static func serverError(requestID: String) -> CSCError {
        CSCError(status: 500, error: "server_error", description: "Internal error; quote request id \(requestID) to the operator")
    }

    private static func formatSeconds(_ s: Double) -> String {
        s.rounded() == s ? String(Int(s)) : String(s)
    }
}
