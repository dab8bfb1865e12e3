import Foundation

/// The two CSC API versions cscgate speaks on both sides.
public enum CSCVersion: String, Sendable, CaseIterable, Codable {
    case v1, v2
}

/// The CSC methods cscgate knows, named as on the v1 or v2 path.
public enum CSCMethod: String, Sendable, CaseIterable {
    case info
    case authLogin = "auth/login"
    case authRevoke = "auth/revoke"
    case credentialsList = "credentials/list"
    case credentialsInfo = "credentials/info"
    case credentialsAuthorize = "credentials/authorize"
    case credentialsAuthorizeCheck = "credentials/authorizeCheck"
    case credentialsExtendTransaction = "credentials/extendTransaction"
    case credentialsSendOTP = "credentials/sendOTP"
    case credentialsGetChallenge = "credentials/getChallenge"
    case signaturesSignHash = "signatures/signHash"
    case signaturesSignDoc = "signatures/signDoc"
    case signaturesSignPolling = "signatures/signPolling"
    case signaturesTimestamp = "signatures/timestamp"

    /// The operation as the ledger, logs and policies name it, the same in v1 and v2.
    public var operation: String { rawValue }
}

public enum CertificatesOption: String, Sendable {
    case none, single, chain

    static func parse(_ s: String?) throws -> CertificatesOption {
        guard let s else { return .single }
        guard let v = CertificatesOption(rawValue: s) else {
            throw CSCError.invalidRequest("Invalid parameter certificates")
        }
        return v
    }
}

public enum SCAL: String, Sendable, Codable {
    case one = "1", two = "2"
}

public enum AuthMode: String, Sendable, Codable {
    case implicit, explicit, oauth2code
}

public enum KeyStatus: String, Sendable { case enabled, disabled }
public enum CertificateStatus: String, Sendable { case valid, expired, revoked, suspended }

// MARK: - Requests

public struct InfoRequest: Sendable, Equatable {
    public var lang: String?
    public init(lang: String? = nil) { self.lang = lang }
}

public struct LoginRequest: Sendable, Equatable {
    public var refreshToken: String?
    public var rememberMe: Bool
    public var clientData: String?
    public init(refreshToken: String? = nil, rememberMe: Bool = false, clientData: String? = nil) {
        self.refreshToken = refreshToken; self.rememberMe = rememberMe; self.clientData = clientData
    }
}

public struct RevokeRequest: Sendable, Equatable {
    public var token: String
    public var tokenTypeHint: String?
    public init(token: String, tokenTypeHint: String? = nil) { self.token = token; self.tokenTypeHint = tokenTypeHint }
}

public struct CredentialListRequest: Sendable, Equatable {
    public var userID: String?
    public var maxResults: Int?
    public var pageToken: String?
    public var credentialInfo: Bool
    public var certificates: CertificatesOption
    public var certInfo: Bool
    public var authInfo: Bool
    public var onlyValid: Bool
    public var clientData: String?

    public init(userID: String? = nil, maxResults: Int? = nil, pageToken: String? = nil, credentialInfo: Bool = false,
                certificates: CertificatesOption = .single, certInfo: Bool = false, authInfo: Bool = false,
                onlyValid: Bool = false, clientData: String? = nil) {
        self.userID = userID; self.maxResults = maxResults; self.pageToken = pageToken
        self.credentialInfo = credentialInfo; self.certificates = certificates; self.certInfo = certInfo
        self.authInfo = authInfo; self.onlyValid = onlyValid; self.clientData = clientData
    }
}

public struct CredentialInfoRequest: Sendable, Equatable {
    public var credentialID: String
    public var certificates: CertificatesOption
    public var certInfo: Bool
    public var authInfo: Bool
    public var lang: String?
    public var clientData: String?

    public init(credentialID: String, certificates: CertificatesOption = .single, certInfo: Bool = false,
                authInfo: Bool = false, lang: String? = nil, clientData: String? = nil) {
        self.credentialID = credentialID; self.certificates = certificates; self.certInfo = certInfo
        self.authInfo = authInfo; self.lang = lang; self.clientData = clientData
    }
}

public struct AuthorizeRequest: Sendable, Equatable {
    public var credentialID: String
    public var numSignatures: Int
    public var hashes: [Data]?
    public var hashAlgorithm: String?
    /// Secret factors: never logged, never encoded anywhere but the upstream request.
    public var pin: String?
    public var otp: String?
    public var description: String?
    public var clientData: String?

    public init(credentialID: String, numSignatures: Int, hashes: [Data]? = nil, hashAlgorithm: String? = nil,
                pin: String? = nil, otp: String? = nil, description: String? = nil, clientData: String? = nil) {
        self.credentialID = credentialID; self.numSignatures = numSignatures; self.hashes = hashes
        self.hashAlgorithm = hashAlgorithm; self.pin = pin; self.otp = otp
        self.description = description; self.clientData = clientData
    }
}

public struct AuthorizeResult: Sendable, Equatable {
    public var sad: String
    public var expiresIn: Int
    public init(sad: String, expiresIn: Int) { self.sad = sad; self.expiresIn = expiresIn }
}

public struct ExtendTransactionRequest: Sendable, Equatable {
    public var credentialID: String
    public var sad: String
    public var hashes: [Data]?
    public var hashAlgorithm: String?
    public var clientData: String?

    public init(credentialID: String, sad: String, hashes: [Data]? = nil, hashAlgorithm: String? = nil, clientData: String? = nil) {
        self.credentialID = credentialID; self.sad = sad; self.hashes = hashes
        self.hashAlgorithm = hashAlgorithm; self.clientData = clientData
    }
}

/// v1 `sendOTP` and v2 `getChallenge` are one operation: ask the RSSP to deliver an OTP.
public struct ChallengeRequest: Sendable, Equatable {
    public var credentialID: String
    public var authObjectID: String?
    public var clientData: String?
    public init(credentialID: String, authObjectID: String? = nil, clientData: String? = nil) {
        self.credentialID = credentialID; self.authObjectID = authObjectID; self.clientData = clientData
    }
}

public struct ChallengeResult: Sendable, Equatable {
    /// Nil when the challenge went out of band (HTTP 204).
    public var challenge: String?
    public init(challenge: String? = nil) { self.challenge = challenge }
}

public struct SignHashRequest: Sendable, Equatable {
    public var credentialID: String
    public var sad: String?
    public var hashes: [Data]
    public var hashAlgorithm: String?
    public var signAlgorithm: String
    public var signAlgorithmParameters: Data?
    public var clientData: String?

    public init(credentialID: String, sad: String?, hashes: [Data], hashAlgorithm: String? = nil,
                signAlgorithm: String, signAlgorithmParameters: Data? = nil, clientData: String? = nil) {
        self.credentialID = credentialID; self.sad = sad; self.hashes = hashes; self.hashAlgorithm = hashAlgorithm
        self.signAlgorithm = signAlgorithm; self.signAlgorithmParameters = signAlgorithmParameters
        self.clientData = clientData
    }
}

public struct SignHashResult: Sendable, Equatable {
    public var signatures: [Data]
    public init(signatures: [Data]) { self.signatures = signatures }
}

public struct TimestampRequest: Sendable, Equatable {
    public var hash: Data
    public var hashAlgorithm: String
    public var nonce: String?
    public var clientData: String?
    public init(hash: Data, hashAlgorithm: String, nonce: String? = nil, clientData: String? = nil) {
        self.hash = hash; self.hashAlgorithm = hashAlgorithm; self.nonce = nonce; self.clientData = clientData
    }
}

public struct TimestampResult: Sendable, Equatable {
    public var timestamp: Data
    public init(timestamp: Data) { self.timestamp = timestamp }
}

// MARK: - Results

public struct TokenResult: Sendable, Equatable {
    public var accessToken: String
    public var refreshToken: String?
    public var expiresIn: Int
    public init(accessToken: String, refreshToken: String? = nil, expiresIn: Int) {
        self.accessToken = accessToken; self.refreshToken = refreshToken; self.expiresIn = expiresIn
    }
}

public struct ServiceInfo: Sendable, Equatable {
    public var specs: String
    public var name: String
    public var logo: String
    public var region: String
    public var lang: String
    public var description: String
    public var authTypes: [String]
    public var oauth2: String?
    /// Version-neutral method names (`credentials/sendOTP` stands for `getChallenge` too).
    public var methods: [CSCMethod]
    public var signAlgorithms: [String]

    public init(specs: String = "", name: String, logo: String, region: String, lang: String, description: String,
                authTypes: [String], oauth2: String? = nil, methods: [CSCMethod], signAlgorithms: [String] = []) {
        self.specs = specs; self.name = name; self.logo = logo; self.region = region; self.lang = lang
        self.description = description; self.authTypes = authTypes; self.oauth2 = oauth2
        self.methods = methods; self.signAlgorithms = signAlgorithms
    }
}

public struct KeyInfo: Sendable, Equatable {
    public var status: KeyStatus
    public var algorithms: [String]
    public var length: Int
    public var curve: String?
    public init(status: KeyStatus, algorithms: [String], length: Int, curve: String? = nil) {
        self.status = status; self.algorithms = algorithms; self.length = length; self.curve = curve
    }
}

public struct CertInfo: Sendable, Equatable {
    public var status: CertificateStatus?
    public var certificates: [String]?
    public var issuerDN: String?
    public var serialNumber: String?
    public var subjectDN: String?
    public var validFrom: String?
    public var validTo: String?
    public init(status: CertificateStatus? = nil, certificates: [String]? = nil, issuerDN: String? = nil,
                serialNumber: String? = nil, subjectDN: String? = nil, validFrom: String? = nil, validTo: String? = nil) {
        self.status = status; self.certificates = certificates; self.issuerDN = issuerDN
        self.serialNumber = serialNumber; self.subjectDN = subjectDN; self.validFrom = validFrom; self.validTo = validTo
    }
}

/// One authentication factor, in the v1 shape (`PIN`, `OTP`); v2 `auth.objects` are derived from it.
public struct AuthFactor: Sendable, Equatable {
    public enum Kind: String, Sendable { case pin = "PIN", otp = "OTP" }
    public var kind: Kind
    public var presence: String
    public var format: String?
    public var label: String?
    public var description: String?
    /// OTP only: `offline` (device-generated) or `online` (sent by the RSSP on request).
    public var otpType: String?
    public var otpID: String?
    public var provider: String?

    public init(kind: Kind, presence: String = "true", format: String? = nil, label: String? = nil,
                description: String? = nil, otpType: String? = nil, otpID: String? = nil, provider: String? = nil) {
        self.kind = kind; self.presence = presence; self.format = format; self.label = label
        self.description = description; self.otpType = otpType; self.otpID = otpID; self.provider = provider
    }
}

public struct CredentialInfo: Sendable, Equatable {
    public var description: String?
    public var signatureQualifier: String?
    public var key: KeyInfo
    public var cert: CertInfo
    public var authMode: AuthMode
    public var authFactors: [AuthFactor]
    public var scal: SCAL
    public var multisign: Int
    public var lang: String?

    public init(description: String? = nil, signatureQualifier: String? = nil, key: KeyInfo, cert: CertInfo,
                authMode: AuthMode, authFactors: [AuthFactor] = [], scal: SCAL = .one, multisign: Int = 1, lang: String? = nil) {
        self.description = description; self.signatureQualifier = signatureQualifier; self.key = key; self.cert = cert
        self.authMode = authMode; self.authFactors = authFactors; self.scal = scal; self.multisign = multisign
        self.lang = lang
    }
}

public struct CredentialListResult: Sendable, Equatable {
    public var credentialIDs: [String]
    /// v2 `credentialInfos`, in the order of `credentialIDs`.
    public var credentialInfos: [CredentialInfo]?
    public var nextPageToken: String?
    public var onlyValid: Bool?

    public init(credentialIDs: [String], credentialInfos: [CredentialInfo]? = nil, nextPageToken: String? = nil, onlyValid: Bool? = nil) {
        self.credentialIDs = credentialIDs; self.credentialInfos = credentialInfos
        self.nextPageToken = nextPageToken; self.onlyValid = onlyValid
    }
}
