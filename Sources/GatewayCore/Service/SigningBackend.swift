import CSC
import Logging

/// Per-request facts every stage and backend may need: the request id for logs, and the
/// client's address for `source` policy rules.
public struct OperationContext: Sendable {
    public let requestID: String
    /// True when the client chose the request id (X-Request-ID): only then can it be a retry.
    public let requestIDFromClient: Bool
    public var logger: Logger
    /// The client's network address, for `source` rules; nil when unknown.
    public var clientAddress: IPAddress?

    public init(requestID: String, requestIDFromClient: Bool = false, logger: Logger, clientAddress: IPAddress? = nil) {
        self.requestID = requestID
        self.requestIDFromClient = requestIDFromClient
        self.clientAddress = clientAddress
        var logger = logger
        logger[metadataKey: "request_id"] = .string(requestID)
        self.logger = logger
    }
}

/// Where keys live: a remote CSC RSSP or (later) a local HSM. Requests carry the backend's own
/// credential ids and SADs; the gateway's ids and sealed SADs never reach a backend.
public protocol SigningBackend: Sendable {
    var name: String { get }
    /// The methods this backend offers, as version-neutral names.
    func methods(_ context: OperationContext) async throws -> [CSCMethod]
    func credentialInfo(_ request: CredentialInfoRequest, _ context: OperationContext) async throws -> CredentialInfo
    func authorize(_ request: AuthorizeRequest, _ context: OperationContext) async throws -> AuthorizeResult
    func extendTransaction(_ request: ExtendTransactionRequest, _ context: OperationContext) async throws -> AuthorizeResult
    func sendChallenge(_ request: ChallengeRequest, _ context: OperationContext) async throws -> ChallengeResult
    func signHash(_ request: SignHashRequest, _ context: OperationContext) async throws -> SignHashResult
    func timestamp(_ request: TimestampRequest, _ context: OperationContext) async throws -> TimestampResult
}
