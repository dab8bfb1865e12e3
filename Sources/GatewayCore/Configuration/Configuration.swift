import Foundation
import CSC

/// `gateway.yaml`: how the gateway listens, where its tenants and policies live, and which
/// upstreams it may forward to.
public struct GatewayConfiguration: Sendable {
    public var host: String
    public var port: Int
    /// The base URL clients reach the gateway at; `info.oauth2` is derived from it.
    public var publicURL: String
    public var tenantsDirectory: String
    public var policiesDirectory: String
    public var service: ServiceDescription
    public var tokens: TokenSettings
    public var sad: SADSettings
    public var maxBodyBytes: Int
    public var maxHashesPerRequest: Int
    public var upstreams: [UpstreamConfiguration]
    public var ledger: LedgerSettings
    /// Operators allowed on `/admin/v1/`; empty means the admin API answers 401 to everyone.
    public var admins: [AdminConfiguration] = []
    /// `ocsp:`: signer-certificate validation before authorize and signHash; off when absent.
    public var ocsp: OCSPSettings = OCSPSettings()
    /// Where limit and quota counters live.
    public var counters = CounterSettings()
    /// Where tokens and SAD budgets live.
    public var sessions = SessionSettings()
    /// Seconds between checks of tenants/ and policies/ for changes; 0 turns the watch off.
    public var reloadPollInterval: Double = 2

    /// `counters:` in this process (the default), or in PostgreSQL shared by every instance.
    public struct CounterSettings: Sendable {
        /// nil: in memory.
        public var postgres: PostgresLedgerSettings?
        /// Seconds the shared store has to answer one decision before the tenant's fail mode applies.
        public var timeout: Double = 0.25
        /// Seconds a shared concurrency permit lives at most: longer than any operation can
        /// take, short enough that a crashed instance's permits free up soon.
        public var permitLease: Double = 120

        public init(postgres: PostgresLedgerSettings? = nil, timeout: Double = 0.25, permitLease: Double = 120) {
            self.postgres = postgres; self.timeout = timeout; self.permitLease = permitLease
        }
    }

    /// `sessions:` tokens and SAD budgets in this process (the default), or in PostgreSQL
    /// shared by every instance, so a client may reach any of them.
    public struct SessionSettings: Sendable {
        /// nil: in this process.
        public var postgres: PostgresLedgerSettings?
        /// Seconds the shared store has to answer one step before the request is refused (503).
        public var timeout: Double = 0.5

        public init(postgres: PostgresLedgerSettings? = nil, timeout: Double = 0.5) {
            self.postgres = postgres; self.timeout = timeout
        }
    }

    /// Where usage is recorded. The embedded default is a SQLite file next to gateway.yaml;
    /// several instances share one PostgreSQL database instead.
    public struct LedgerSettings: Sendable {
        public enum Store: Sendable, Equatable {
            /// `ledger.path`: one SQLite file (WAL), one gateway process.
            case sqlite(path: String)
            /// `ledger.url`: a PostgreSQL database that several gateway instances write together.
            case postgres(PostgresLedgerSettings)
        }

        public var store: Store
        /// The Ed25519 key that signs chain checkpoints; created on first start if missing.
        /// Every instance writing one PostgreSQL ledger must use the same key.
        public var checkpointKeyFile: String
        public var checkpointInterval: Int
        /// `ledger.enabled: false` records nothing: no billing, no audit trail, no replay of a
        /// retried signHash. Only for measuring what the ledger costs; `cscgate check` warns.
        public var enabled = true
        /// SQLite: `ledger.journal`, where the durable journal in front of the file lives
        /// (default: the file's path + ".journal"), e.g. on a faster disk.
        public var journalDirectory: String?
        /// SQLite: `ledger.commitDelay` in milliseconds, how long a batch may wait for operations
        /// still under way to join it. Off by default: waiting saves flushes but adds latency,
        /// which only pays where the CPU, not an upstream, is the bottleneck (README, "The journal").
        public var commitDelay: Double = 0
        /// SQLite: `ledger.applyInterval` in milliseconds, how long an acknowledged event may wait
        /// in the journal before it is stored in the file (longer: fewer, larger transactions).
        public var applyInterval: Double = 500
        /// SQLite: `ledger.reservationHold` in milliseconds, the longest a signing's reservation
        /// waits for concurrent ones to share its flush (0: never; README, "Reservations").
        public var reservationHold: Double = 5

        public init(store: Store, checkpointKeyFile: String, checkpointInterval: Int) {
            self.store = store; self.checkpointKeyFile = checkpointKeyFile; self.checkpointInterval = checkpointInterval
        }

        /// The SQLite file, when the ledger is one.
        public var path: String? {
            if case .sqlite(let path) = store { return path }
            return nil
        }

        /// Names the ledger for messages: the file, or the URL (which never holds a password).
        public var location: String {
            switch store {
            case .sqlite(let path): path
            case .postgres(let pg): pg.url
            }
        }
    }

    /// `ledger.url: postgres://user@host:port/database`; the password, where one is needed,
    /// comes from `passwordEnv` or `passwordFile`, never from the YAML.
    public struct PostgresLedgerSettings: Sendable, Equatable {
        public enum TLSMode: String, Sendable, Equatable, CaseIterable {
            case disable, prefer, require
        }

        public var host: String
        public var port: Int
        public var username: String
        public var database: String
        public var password: SecretReference?
        public var tls: TLSMode
        /// The schema holding the ledger's tables (created if missing).
        public var schema: String
        /// Connections this instance opens at most.
        public var maxConnections: Int

        public init(host: String, port: Int = 5432, username: String, database: String, password: SecretReference? = nil,
                    tls: TLSMode = .prefer, schema: String = "public", maxConnections: Int = 8) {
            self.host = host; self.port = port; self.username = username; self.database = database
            self.password = password; self.tls = tls; self.schema = schema; self.maxConnections = maxConnections
        }

        /// The URL without any secret.
        public var url: String {
            let h = host.contains(":") ? "[\(host)]" : host
            return "postgres://\(username)@\(h):\(port)/\(database)" + (schema == "public" ? "" : " (schema \(schema))")
        }

        /// Parses `postgres://user@host[:port]/database[?sslmode=disable|prefer|require]`; the
        /// error says what is wrong, never repeating a password.
        public static func parse(url text: String) -> Result<PostgresLedgerSettings, ParseError> {
            guard let components = URLComponents(string: text), let scheme = components.scheme?.lowercased() else {
                return .failure(ParseError("not a URL; expected postgres://user@host:port/database"))
            }
            guard scheme == "postgres" || scheme == "postgresql" else {
                return .failure(ParseError("the scheme must be postgres:// (got \(scheme)://)"))
            }
            if components.password != nil {
                return .failure(ParseError("the URL must not hold a password; use passwordEnv or passwordFile"))
            }
            guard let user = components.user, !user.isEmpty else {
                return .failure(ParseError("the URL names no user: postgres://USER@host:port/database"))
            }
            guard let host = components.host, !host.isEmpty else {
                return .failure(ParseError("the URL names no host: postgres://user@HOST:port/database"))
            }
            let port = components.port ?? 5432
            guard (1...65535).contains(port) else { return .failure(ParseError("the port must be between 1 and 65535")) }
            var database = components.path
            while database.hasPrefix("/") { database.removeFirst() }
            guard !database.isEmpty, !database.contains("/") else {
                return .failure(ParseError("the URL names no database: postgres://user@host:port/DATABASE"))
            }
            var tls = TLSMode.prefer
            for item in components.queryItems ?? [] {
                switch item.name {
                case "sslmode":
                    guard let mode = item.value.flatMap(TLSMode.init(rawValue:)) else {
                        return .failure(ParseError("sslmode must be one of \(TLSMode.allCases.map(\.rawValue).joined(separator: ", "))"))
                    }
                    tls = mode
                default:
                    return .failure(ParseError("unknown URL parameter '\(item.name)' (supported: sslmode)"))
                }
            }
            return .success(PostgresLedgerSettings(host: host.hasPrefix("[") ? String(host.dropFirst().dropLast()) : host,
                                                   port: port, username: user.removingPercentEncoding ?? user,
                                                   database: database.removingPercentEncoding ?? database, tls: tls))
        }

        public struct ParseError: Error, Sendable, CustomStringConvertible {
            public let description: String
            init(_ d: String) { description = d }
        }
    }

    public struct ServiceDescription: Sendable {
        public var name = "cscgate"
        public var logo = "https://cscgate.invalid/logo.png"
        public var region = "EU"
        public var lang = "en-US"
        public var description = "cscgate: one CSC API over several remote signing services"
    }

    public struct TokenSettings: Sendable {
        public var accessTokenLifetime = 3600
        public var refreshTokenLifetime = 30 * 24 * 3600
    }

    public struct SADSettings: Sendable {
        /// Where the 32-byte sealing key comes from: an environment variable or a file (base64).
        public var keyEnvironment: String?
        public var keyFile: String?
        /// Upper bound on a SAD's life, whatever the upstream grants.
        public var maxLifetime = 3600
    }
}

public struct UpstreamConfiguration: Sendable {
    public enum Authentication: Sendable, Equatable {
        case none
        /// `auth/login` with HTTP Basic; the password comes from the environment or a file.
        case basic(username: String, password: SecretReference)
        /// OAuth2 client credentials at `tokenURL`.
        case oauth2ClientCredentials(tokenURL: String, clientID: String, clientSecret: SecretReference)
    }

    public var name: String
    /// The URL up to and excluding `/csc/v1` or `/csc/v2`.
    public var baseURL: String
    public var version: CSCVersion
    public var authentication: Authentication
    public var timeout: Double
    public var connectTimeout: Double
    public var maxConnections: Int
    /// How long credential descriptions fetched from the upstream are reused.
    public var credentialInfoTTL: Double
    /// PEM files of the CAs this upstream's signer certificates must chain to.
    public var trustAnchors: [String] = []
    /// PEM roots the upstream's own TLS server certificate must chain to (default: the system's).
    public var caFile: String? = nil
    /// Set for `kind: pkcs11`: the keys live in a local HSM and the gateway is the RSSP
    /// (`baseURL` and the HTTP settings are then unused).
    public var pkcs11: PKCS11Settings? = nil

    public var isPKCS11: Bool { pkcs11 != nil }
}

/// `kind: pkcs11`: a PKCS#11 module loaded by path, one token on it, and the credentials whose
/// keys are on that token, with how each is authorized.
public struct PKCS11Settings: Sendable {
    public var modulePath: String
    /// The token is found by label (slot numbers change, e.g. SoftHSM renumbers them), or by slot.
    public var tokenLabel: String?
    public var slot: Int?
    /// The token's user PIN, from the environment or a file; never from the YAML.
    public var pin: SecretReference
    /// Logged-in sessions kept open; bounds concurrency into the HSM.
    public var sessions: Int
    /// Lifetime of the SADs this backend issues (the gateway caps it with `sad.maxLifetime`).
    public var sadLifetime: Int
    /// ECDSA signing on the calling (event-loop) thread instead of a pool thread. Only for a
    /// module that signs in microseconds in-process (SoftHSM2): a network or PCIe HSM would
    /// stall every connection of that event loop for as long as each signature takes.
    public var inlineECDSA: Bool
    public var credentials: [LocalCredentialSettings]

    public init(modulePath: String, tokenLabel: String?, slot: Int?, pin: SecretReference, sessions: Int = 4,
                sadLifetime: Int = 3600, inlineECDSA: Bool = false, credentials: [LocalCredentialSettings]) {
        self.modulePath = modulePath; self.tokenLabel = tokenLabel; self.slot = slot; self.pin = pin
        self.sessions = sessions; self.sadLifetime = sadLifetime; self.inlineECDSA = inlineECDSA
        self.credentials = credentials
    }
}

/// One key on a PKCS#11 token as a CSC credential: its label on the token and how a signer
/// authorizes its use.
public struct LocalCredentialSettings: Sendable {
    public var label: String
    public var authMode: AuthMode
    /// `explicit` with a PIN: its scrypt hash (`cscgate keys pin-hash`), never the PIN.
    public var pinHash: SecretHash?
    /// `N` (digits) or `A` (any characters), as `credentials/info` tells clients.
    public var pinFormat: String
    public var maxPinFailures: Int
    public var otp: OTPSettings?
    public var scal: SCAL
    public var multisign: Int
    public var signatureQualifier: String?
    public var description: String?

    public init(label: String, authMode: AuthMode, pinHash: SecretHash? = nil, pinFormat: String = "N", maxPinFailures: Int = 3,
                otp: OTPSettings? = nil, scal: SCAL = .one, multisign: Int = 1, signatureQualifier: String? = nil,
                description: String? = nil) {
        self.label = label; self.authMode = authMode; self.pinHash = pinHash; self.pinFormat = pinFormat
        self.maxPinFailures = maxPinFailures; self.otp = otp; self.scal = scal; self.multisign = multisign
        self.signatureQualifier = signatureQualifier; self.description = description
    }
}

/// An offline TOTP factor (RFC 6238): the shared secret (base32) from the environment or a file.
public struct OTPSettings: Sendable {
    public enum Algorithm: String, Sendable { case sha1 = "SHA1", sha256 = "SHA256", sha512 = "SHA512" }
    public var secret: SecretReference
    public var digits: Int
    public var period: Int
    public var algorithm: Algorithm
    public var maxFailures: Int

    public init(secret: SecretReference, digits: Int = 6, period: Int = 30, algorithm: Algorithm = .sha1, maxFailures: Int = 5) {
        self.secret = secret; self.digits = digits; self.period = period; self.algorithm = algorithm
        self.maxFailures = maxFailures
    }
}

/// A secret named in configuration but kept out of it.
public enum SecretReference: Sendable, Equatable, CustomStringConvertible {
    case environment(String)
    case file(String)

    public func resolve() throws -> String {
        switch self {
        case .environment(let name):
            guard let v = ProcessInfo.processInfo.environment[name], !v.isEmpty else {
                throw ConfigurationError([ConfigurationIssue(file: "environment", line: nil, message: "variable \(name) is not set")])
            }
            return v
        case .file(let path):
            guard let data = FileManager.default.contents(atPath: path),
                  let v = String(data: data, encoding: .utf8)?.trimmingCharacters(in: .whitespacesAndNewlines), !v.isEmpty
            else {
                throw ConfigurationError([ConfigurationIssue(file: path, line: nil, message: "secret file is missing or empty")])
            }
            return v
        }
    }

    /// Names where the secret lives, never the secret.
    public var description: String {
        switch self {
        case .environment(let n): "env:\(n)"
        case .file(let p): "file:\(p)"
        }
    }
}

/// An operator of the gateway (billing, compliance, on-call), who calls `/admin/v1/` with
/// `Authorization: Bearer <secret>`. The secret is stored as a `cscgate secret hash`.
public struct AdminConfiguration: Sendable {
    public var id: String
    public var secretHash: SecretHash
    public init(id: String, secretHash: SecretHash) { self.id = id; self.secretHash = secretHash }
}

/// `tenants/<tenant>.yaml`: one customer of the gateway.
public struct TenantConfiguration: Sendable {
    public var id: String
    public var displayName: String
    public var clients: [ClientConfiguration]
    public var credentials: [CredentialRoute]
    /// The upstream that serves `signatures/timestamp` for this tenant, if any.
    public var timestampUpstream: String?
    /// Sent as `clientData` on timestamp calls: some RSSPs use it to pick the TSA.
    public var timestampClientData: String?
    /// The reseller this tenant is sold through; the reseller may read this tenant's usage.
    public var parent: String? = nil
    public var parentLine: Int? = nil
    /// What the tenant pays and how much it may sign; nil means usage is recorded but not priced.
    public var plan: TenantPlan? = nil
    /// Names of `policies/<name>.yaml` files that apply to every operation of this tenant.
    public var policies: [String] = []
    /// The tenant's own choices for its signer certificates (failure mode, key usage, anchors).
    public var signerCertificates = SignerCertificateOverrides()
    public var policiesLine: Int? = nil
    /// What happens to this tenant's operations when the shared counter store cannot answer.
    public var counterStoreFailure: CounterStoreFailureMode = .closed
}

/// A tenant's monthly plan. Months are calendar months in UTC, so every instance and every
/// report agrees on where one ends.
public struct TenantPlan: Sendable, Equatable {
    /// ISO 4217 code, e.g. EUR.
    public var currency: String
    public var monthlyFee: Decimal = 0
    /// Signatures covered by the monthly fee at `pricePerSignature`.
    public var includedSignatures: Int = 0
    public var pricePerSignature: Decimal = 0
    /// Price of each signature beyond `includedSignatures`.
    public var overagePrice: Decimal = 0
    /// Hard monthly cap in signatures; nil means no cap.
    public var monthlyQuota: Int? = nil
    /// Percentages of `monthlyQuota` at which an event is raised for the operator.
    public var quotaThresholds: [Int] = [80, 95]

    public init(currency: String, monthlyFee: Decimal = 0, includedSignatures: Int = 0, pricePerSignature: Decimal = 0,
                overagePrice: Decimal = 0, monthlyQuota: Int? = nil, quotaThresholds: [Int] = [80, 95]) {
        self.currency = currency
        self.monthlyFee = monthlyFee
        self.includedSignatures = includedSignatures
        self.pricePerSignature = pricePerSignature
        self.overagePrice = overagePrice
        self.monthlyQuota = monthlyQuota
        self.quotaThresholds = quotaThresholds
    }
}

public struct ClientConfiguration: Sendable {
    public var id: String
    /// Where it is defined, for errors that involve two files.
    public var line: Int? = nil
    public var name: String
    public var secretHash: SecretHash
    public var scopes: Set<String>
    /// Policy files that apply to this client's operations, on top of the tenant's.
    public var policies: [String] = []
}

/// The id a client sees, and where the key behind it really lives.
public struct CredentialRoute: Sendable, Equatable {
    public var id: String
    public var upstream: String
    public var upstreamCredentialID: String
    public var description: String?
    /// Where it is defined, for checks made once every file is read.
    public var line: Int? = nil
    /// Free-form labels (e.g. `country: DE`) that policy rules can match on.
    public var labels: [String: String] = [:]
    /// Policy files that apply to operations with this credential, on top of the tenant's.
    public var policies: [String] = []
    /// This credential's own choices for its signer certificate (failure mode, key usage).
    public var signerCertificates = SignerCertificateOverrides()

    /// Two routes are the same route wherever they are written.
    public static func == (a: CredentialRoute, b: CredentialRoute) -> Bool {
        a.id == b.id && a.upstream == b.upstream && a.upstreamCredentialID == b.upstreamCredentialID
            && a.description == b.description && a.labels == b.labels && a.policies == b.policies
            && a.signerCertificates == b.signerCertificates
    }
}

/// Everything loaded and cross-checked; immutable, replaced whole on reload.
public struct LoadedConfiguration: Sendable {
    public var gateway: GatewayConfiguration
    public var tenants: [TenantConfiguration]
    public var policies: [PolicyDocument] = []

    public init(gateway: GatewayConfiguration, tenants: [TenantConfiguration], policies: [PolicyDocument] = []) {
        self.gateway = gateway; self.tenants = tenants; self.policies = policies
    }
}

/// What a signer-certificate check refuses when the OCSP answer is not a clear "good".
public enum RevocationFailureMode: String, Sendable, Hashable, CaseIterable {
    /// unknown, unreachable, timeout or invalid response: refuse.
    case hard
    /// the same: pass, logged and recorded in the usage event. A revoked answer still refuses.
    case soft
}

/// The key usage a signer certificate must carry.
public enum SignerKeyUsage: String, Sendable, Hashable, CaseIterable {
    case digitalSignature, nonRepudiation
}

/// `ocsp:` in gateway.yaml. Defaults follow RFC 5019 and keep a dead responder from stalling signing.
public struct OCSPSettings: Sendable {
    public var enabled = false
    public var failureMode = RevocationFailureMode.hard
    public var keyUsage = SignerKeyUsage.digitalSignature
    /// Seconds for one responder exchange, connection included.
    public var timeout = 3.0
    /// Seconds a response is relied on at most, even when its nextUpdate is later.
    public var maxAge = 3600.0
    /// Seconds of tolerance on thisUpdate and nextUpdate.
    public var clockSkew = 300.0
    /// Seconds a failed check (unknown, unreachable, invalid) is remembered before asking again.
    public var retryAfter = 30.0
    /// RFC 5019 GET when the encoded request fits `getMaxBytes`; POST otherwise.
    public var get = true
    public var getMaxBytes = 255
    /// Responder URLs that replace a certificate's AIA, per issuing CA (subject DN as `ocsp check` prints it).
    public var responders: [ResponderOverride] = []

    public init() {}

    public struct ResponderOverride: Sendable, Equatable {
        public var issuer: String
        public var url: String
        public init(issuer: String, url: String) { self.issuer = issuer; self.url = url }
    }
}

/// Per tenant or per credential; nil fields inherit (credential → tenant → gateway).
public struct SignerCertificateOverrides: Sendable, Equatable {
    public var failureMode: RevocationFailureMode?
    public var keyUsage: SignerKeyUsage?
    /// PEM files; replace the upstream's anchors for this tenant.
    public var trustAnchors: [String]?
    public init(failureMode: RevocationFailureMode? = nil, keyUsage: SignerKeyUsage? = nil, trustAnchors: [String]? = nil) {
        self.failureMode = failureMode; self.keyUsage = keyUsage; self.trustAnchors = trustAnchors
    }
}
