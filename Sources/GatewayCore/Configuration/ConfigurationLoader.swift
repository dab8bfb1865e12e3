import Foundation
import Yams
import CSC

/// Reads `gateway.yaml`, `tenants/*.yaml` and `policies/*.yaml` and checks them against each
/// other. Every problem is reported with file and line; nothing half-valid is ever returned.
public enum ConfigurationLoader {
    public static let knownScopes: Set<String> = ["service"]

    public static func load(gatewayFile: String) throws -> LoadedConfiguration {
        let fm = FileManager.default
        guard let text = fm.contents(atPath: gatewayFile).flatMap({ String(data: $0, encoding: .utf8) }) else {
            throw ConfigurationError([ConfigurationIssue(file: gatewayFile, line: nil, message: "cannot read file")])
        }
        let base = URL(fileURLWithPath: gatewayFile).deletingLastPathComponent()
        let log = IssueLog(file: gatewayFile)
        var issues = [ConfigurationIssue]()
        let gateway = parseGateway(text, base: base, log: log)
        issues += log.issues

        var tenants = [TenantConfiguration]()
        var policies = [PolicyDocument]()
        if let gateway {
            let dir = gateway.tenantsDirectory
            let files = ((try? fm.contentsOfDirectory(atPath: dir)) ?? [])
                .filter { $0.hasSuffix(".yaml") || $0.hasSuffix(".yml") }.sorted()
            if !fm.fileExists(atPath: dir) {
                issues.append(ConfigurationIssue(file: gatewayFile, line: nil, message: "tenants directory \(dir) does not exist"))
            }
            var fileOf = [String: String]()
            for name in files {
                let path = dir + "/" + name
                if let earlier = fileOf[stem(name)] {
                    // acme.yaml and acme.yml would be one tenant from two files: refuse rather than merge.
                    issues.append(ConfigurationIssue(file: path, line: nil,
                                                     message: "tenant '\(stem(name))' is already defined in \(earlier)"))
                    continue
                }
                fileOf[stem(name)] = path
                let tlog = IssueLog(file: path)
                let content = fm.contents(atPath: path).flatMap { String(data: $0, encoding: .utf8) } ?? ""
                if let t = parseTenant(content, fileStem: stem(name), upstreams: Set(gateway.upstreams.map(\.name)), log: tlog,
                                      base: URL(fileURLWithPath: dir, isDirectory: true)) {
                    tenants.append(t)
                }
                issues += tlog.issues
            }
            let (documents, policyIssues) = loadPolicies(directory: gateway.policiesDirectory)
            policies = documents
            issues += policyIssues
            issues += checkPolicyReferences(tenants, known: Set(documents.map(\.name)), failed: policyIssues.map(\.file),
                                            files: fileOf)
            issues += crossCheck(tenants, files: fileOf, tenantsDirectory: dir)
            issues += checkHSMRoutes(tenants, upstreams: gateway.upstreams, files: fileOf)
            issues += checkParents(tenants, files: fileOf)
            issues += checkTrustAnchors(tenants, gateway: gateway, files: fileOf)
        }
        guard issues.isEmpty, let gateway else { throw ConfigurationError(issues) }
        return LoadedConfiguration(gateway: gateway, tenants: tenants, policies: policies)
    }

    private static func stem(_ fileName: String) -> String {
        URL(fileURLWithPath: fileName).deletingPathExtension().lastPathComponent
    }

    private static func resolve(_ path: String, base: URL) -> String {
        path.hasPrefix("/") ? path : base.appendingPathComponent(path).standardizedFileURL.path
    }

    static func parseGateway(_ text: String, base: URL, log: IssueLog) -> GatewayConfiguration? {
        guard let root = YAMLMap.document(text, log: log) else { return nil }
        root.rejectUnknownKeys(["listen", "publicURL", "tenants", "policies", "service", "tokens", "sad", "limits", "upstreams",
                                "ledger", "admin", "ocsp", "counters", "sessions", "reload"])
        let listen = root.map("listen")
        listen?.rejectUnknownKeys(["host", "port"])
        let host = listen?.string("host") ?? "127.0.0.1"
        let port = listen?.int("port", default: 8080, range: 1...65535) ?? 8080
        var service = GatewayConfiguration.ServiceDescription()
        if let s = root.map("service") {
            s.rejectUnknownKeys(["name", "logo", "region", "lang", "description"])
            service.name = s.string("name") ?? service.name
            service.logo = s.string("logo") ?? service.logo
            service.region = s.string("region") ?? service.region
            service.lang = s.string("lang") ?? service.lang
            service.description = s.string("description") ?? service.description
        }
        var tokens = GatewayConfiguration.TokenSettings()
        if let t = root.map("tokens") {
            t.rejectUnknownKeys(["accessTokenLifetime", "refreshTokenLifetime"])
            tokens.accessTokenLifetime = t.int("accessTokenLifetime", default: 3600, range: 30...86400)
            tokens.refreshTokenLifetime = t.int("refreshTokenLifetime", default: tokens.refreshTokenLifetime, range: 60...(366 * 86400))
        }
        var sad = GatewayConfiguration.SADSettings()
        if let s = root.map("sad") {
            s.rejectUnknownKeys(["keyEnv", "keyFile", "maxLifetime"])
            sad.keyEnvironment = s.string("keyEnv")
            sad.keyFile = s.string("keyFile").map { resolve($0, base: base) }
            sad.maxLifetime = s.int("maxLifetime", default: 3600, range: 10...86400)
        }
        let ledger = parseLedger(root.map("ledger"), base: base)
        let admins = parseAdmins(root.map("admin"))
        let limits = root.map("limits")
        limits?.rejectUnknownKeys(["maxBodyBytes", "maxHashesPerRequest"])
        var upstreams = [UpstreamConfiguration]()
        var seen = Set<String>()
        for u in root.mapList("upstreams") {
            guard let upstream = parseUpstream(u, base: base) else { continue }
            if !seen.insert(upstream.name).inserted {
                u.log.add("upstream '\(upstream.name)' is defined twice", at: u.node)
            }
            upstreams.append(upstream)
        }
        let counters = parseCounters(root.map("counters"), base: base)
        if let c = root.map("counters"), counters.postgres != nil,
           let slowest = upstreams.max(by: { $0.timeout < $1.timeout }), counters.permitLease <= slowest.timeout {
            // A permit that lapses mid-call lets one more operation in than the cap allows.
            c.log.add("'\(c.key("permitLease"))' (\(counters.permitLease) s) must be longer than the slowest upstream timeout "
                      + "('\(slowest.name)': \(slowest.timeout) s)", at: c["permitLease"] ?? c.node)
        }
        let sessions = parseSessions(root.map("sessions"), base: base)
        if let m = root.map("sessions"), sessions.postgres != nil, sad.keyFile == nil, sad.keyEnvironment == nil {
            // A random per-process SAD key would make every other instance refuse this one's SADs.
            m.log.add("'\(m.key("url"))': shared sessions need the same SAD key on every instance (set 'sad.keyFile' or 'sad.keyEnv')",
                      at: m["url"] ?? m.node)
        }
        var reloadPoll = 2.0
        if let r = root.map("reload") {
            r.rejectUnknownKeys(["pollInterval"])
            reloadPoll = r.double("pollInterval", default: 2, range: 0...3600)
        }
        var configuration = GatewayConfiguration(
            host: host, port: port,
            publicURL: root.string("publicURL") ?? "http://\(host):\(port)",
            tenantsDirectory: resolve(root.string("tenants") ?? "tenants", base: base),
            policiesDirectory: resolve(root.string("policies") ?? "policies", base: base),
            service: service, tokens: tokens, sad: sad,
            maxBodyBytes: limits?.int("maxBodyBytes", default: 1 << 20, range: 1024...(64 << 20)) ?? (1 << 20),
            maxHashesPerRequest: limits?.int("maxHashesPerRequest", default: 1000, range: 1...100_000) ?? 1000,
            upstreams: upstreams, ledger: ledger, admins: admins)
        configuration.counters = counters
        configuration.sessions = sessions
        configuration.reloadPollInterval = reloadPoll
        configuration.ocsp = parseOCSP(root.map("ocsp"))
        return configuration
    }

    /// `ocsp:` signer-certificate validation; bounded timeouts so a dead responder never stalls signing.
    static func parseOCSP(_ m: YAMLMap?) -> OCSPSettings {
        var o = OCSPSettings()
        guard let m else { return o }
        m.rejectUnknownKeys(["enabled", "failureMode", "keyUsage", "timeout", "maxAge", "clockSkew", "retryAfter", "get",
                             "getMaxBytes", "responders"])
        o.enabled = m.bool("enabled", default: true)
        if let mode = failureMode(m) { o.failureMode = mode }
        if let usage = keyUsage(m) { o.keyUsage = usage }
        o.timeout = m.double("timeout", default: o.timeout, range: 0.1...30)
        o.maxAge = m.double("maxAge", default: o.maxAge, range: 1...(7 * 86400))
        o.clockSkew = m.double("clockSkew", default: o.clockSkew, range: 0...3600)
        o.retryAfter = m.double("retryAfter", default: o.retryAfter, range: 0...3600)
        o.get = m.bool("get", default: o.get)
        o.getMaxBytes = m.int("getMaxBytes", default: o.getMaxBytes, range: 0...8192)
        for r in m.mapList("responders") {
            r.rejectUnknownKeys(["issuer", "url"])
            guard let issuer = r.string("issuer", required: true), let url = r.string("url", required: true) else { continue }
            if URL(string: url)?.scheme.map({ $0 == "http" || $0 == "https" }) != true {
                r.log.add("'\(r.key("url"))' must be an http or https URL", at: r["url"])
            }
            o.responders.append(.init(issuer: issuer, url: url))
        }
        return o
    }

    static func failureMode(_ m: YAMLMap) -> RevocationFailureMode? {
        guard let text = m.string("failureMode") else { return nil }
        guard let mode = RevocationFailureMode(rawValue: text) else {
            m.log.add("'\(m.key("failureMode"))' must be hard or soft", at: m["failureMode"])
            return nil
        }
        return mode
    }

    static func keyUsage(_ m: YAMLMap) -> SignerKeyUsage? {
        guard let text = m.string("keyUsage") else { return nil }
        guard let usage = SignerKeyUsage(rawValue: text) else {
            m.log.add("'\(m.key("keyUsage"))' must be digitalSignature or nonRepudiation", at: m["keyUsage"])
            return nil
        }
        return usage
    }

    /// PEM files named relative to the file that names them; a missing one is an error now, not at the first signature.
    static func trustAnchors(_ m: YAMLMap, base: URL) -> [String]? {
        guard m["trustAnchors"] != nil else { return nil }
        var paths = [String]()
        for path in m.stringList("trustAnchors") {
            let resolved = resolve(path, base: base)
            if !FileManager.default.fileExists(atPath: resolved) {
                m.log.add("'\(m.key("trustAnchors"))': \(resolved) does not exist", at: m["trustAnchors"])
            }
            paths.append(resolved)
        }
        return paths
    }

    /// `ocsp:` in a tenant file or on one credential: failureMode, keyUsage (and trustAnchors for a tenant).
    static func signerOverrides(_ m: YAMLMap?, base: URL, allowAnchors: Bool) -> SignerCertificateOverrides {
        guard let m else { return SignerCertificateOverrides() }
        m.rejectUnknownKeys(allowAnchors ? ["failureMode", "keyUsage", "trustAnchors"] : ["failureMode", "keyUsage"])
        return SignerCertificateOverrides(failureMode: failureMode(m), keyUsage: keyUsage(m),
                                          trustAnchors: allowAnchors ? trustAnchors(m, base: base) : nil)
    }

    /// `counters:` absent means in memory; `url` (the ledger's URL format) shares them in PostgreSQL.
    static func parseCounters(_ m: YAMLMap?, base: URL) -> GatewayConfiguration.CounterSettings {
        guard let m else { return .init() }
        m.rejectUnknownKeys(["url", "passwordEnv", "passwordFile", "schema", "maxConnections", "timeout", "permitLease"])
        var settings = GatewayConfiguration.CounterSettings(timeout: m.double("timeout", default: 0.25, range: 0.01...30),
                                                           permitLease: m.double("permitLease", default: 120, range: 1...86400))
        settings.postgres = sharedPostgres(m, base: base, section: "counters", what: "PostgreSQL counters",
                                           extraKeys: ["permitLease"])
        return settings
    }

    /// `sessions:` absent means tokens and SAD budgets live in this process; `url` shares them.
    static func parseSessions(_ m: YAMLMap?, base: URL) -> GatewayConfiguration.SessionSettings {
        guard let m else { return .init() }
        m.rejectUnknownKeys(["url", "passwordEnv", "passwordFile", "schema", "maxConnections", "timeout"])
        var settings = GatewayConfiguration.SessionSettings(timeout: m.double("timeout", default: 0.5, range: 0.01...30))
        guard m.string("url") != nil else {
            m.log.add("'\(m.key("url"))' is required: the PostgreSQL database the instances share", at: m.node)
            return settings
        }
        settings.postgres = sharedPostgres(m, base: base, section: "sessions", what: "a shared session store", extraKeys: [])
        return settings
    }

    /// The PostgreSQL part of a section shared by instances (`url`, password, schema, pool).
    private static func sharedPostgres(_ m: YAMLMap, base: URL, section: String, what: String,
                                       extraKeys: [String]) -> GatewayConfiguration.PostgresLedgerSettings? {
        guard let url = m.string("url") else {
            for key in ["passwordEnv", "passwordFile", "schema", "maxConnections"] + extraKeys where m[key] != nil {
                m.log.add("'\(m.key(key))' applies to \(what) only (set '\(section).url')", at: m[key])
            }
            return nil
        }
        switch GatewayConfiguration.PostgresLedgerSettings.parse(url: url) {
        case .success(var pg):
            if let env = m.string("passwordEnv") { pg.password = .environment(env) }
            if let file = m.string("passwordFile") { pg.password = .file(resolve(file, base: base)) }
            if let schema = m.string("schema") { pg.schema = schema }
            pg.maxConnections = m.int("maxConnections", default: 8, range: 1...200)
            return pg
        case .failure(let error):
            m.log.add("'\(m.key("url"))': \(error)", at: m["url"])
            return nil
        }
    }

    /// `ledger:` either `path` (SQLite, the default) or `url` (PostgreSQL) with the password
    /// from `passwordEnv`/`passwordFile` when the server asks for one.
    static func parseAdmins(_ m: YAMLMap?) -> [AdminConfiguration] {
        guard let m else { return [] }
        m.rejectUnknownKeys(["operators"])
        var admins = [AdminConfiguration]()
        for o in m.mapList("operators") {
            o.rejectUnknownKeys(["id", "secretHash", "secret"])
            if o["secret"] != nil {
                o.log.add("'\(o.key("secret"))': operator secrets are never stored in clear; use 'cscgate secret hash' and put the result in secretHash", at: o["secret"])
            }
            guard let id = o.string("id", required: true), let text = o.string("secretHash", required: true) else { continue }
            guard let hash = SecretHash(encoded: text) else {
                o.log.add("'\(o.key("secretHash"))' is not a hash made by 'cscgate secret hash'", at: o["secretHash"])
                continue
            }
            if admins.contains(where: { $0.id == id }) { o.log.add("operator '\(id)' is defined twice", at: o["id"]) }
            admins.append(AdminConfiguration(id: id, secretHash: hash))
        }
        return admins
    }

    static func parseLedger(_ m: YAMLMap?, base: URL) -> GatewayConfiguration.LedgerSettings {
        m?.rejectUnknownKeys(["path", "url", "passwordEnv", "passwordFile", "schema", "maxConnections", "checkpointKeyFile",
                              "checkpointInterval", "enabled", "journal", "commitDelay", "applyInterval", "reservationHold"])
        var settings = parseLedgerStore(m, base: base)
        settings.enabled = m?.bool("enabled", default: true) ?? true
        if let m {
            if settings.path == nil {
                for key in ["journal", "commitDelay", "applyInterval", "reservationHold"] where m[key] != nil {
                    m.log.add("'\(m.key(key))' applies to a SQLite ledger only (PostgreSQL commits on the server)", at: m[key])
                }
            } else {
                settings.journalDirectory = m.string("journal").map { resolve($0, base: base) }
                settings.commitDelay = m.double("commitDelay", default: 0, range: 0...10)
                settings.applyInterval = m.double("applyInterval", default: 500, range: 1...60_000)
                settings.reservationHold = m.double("reservationHold", default: 5, range: 0...50)
            }
        }
        return settings
    }

    private static func parseLedgerStore(_ m: YAMLMap?, base: URL) -> GatewayConfiguration.LedgerSettings {
        let keyFile = resolve(m?.string("checkpointKeyFile") ?? "ledger-checkpoint.key", base: base)
        let interval = m?.int("checkpointInterval", default: 1000, range: 1...1_000_000) ?? 1000
        let sqlite = GatewayConfiguration.LedgerSettings.Store.sqlite(path: resolve(m?.string("path") ?? "ledger.sqlite", base: base))
        guard let m, let url = m.string("url") else {
            if let m {
                for key in ["passwordEnv", "passwordFile", "schema", "maxConnections"] where m[key] != nil {
                    m.log.add("'\(m.key(key))' applies to a PostgreSQL ledger only (set 'ledger.url')", at: m[key])
                }
            }
            return .init(store: sqlite, checkpointKeyFile: keyFile, checkpointInterval: interval)
        }
        if m["path"] != nil {
            m.log.add("'ledger.path' (SQLite) and 'ledger.url' (PostgreSQL) exclude each other", at: m["path"])
        }
        var settings: GatewayConfiguration.PostgresLedgerSettings
        switch GatewayConfiguration.PostgresLedgerSettings.parse(url: url) {
        case .success(let s): settings = s
        case .failure(let error):
            m.log.add("'\(m.key("url"))': \(error)", at: m["url"])
            return .init(store: sqlite, checkpointKeyFile: keyFile, checkpointInterval: interval)
        }
        if let env = m.string("passwordEnv") { settings.password = .environment(env) }
        if let file = m.string("passwordFile") {
            if m["passwordEnv"] != nil { m.log.add("'ledger.passwordEnv' and 'ledger.passwordFile' exclude each other", at: m["passwordFile"]) }
            settings.password = .file(resolve(file, base: base))
        }
        if let schema = m.string("schema") {
            let valid = schema.first.map { $0 == "_" || ($0.isASCII && $0.isLowercase) } == true
                && schema.count <= 63 && schema.allSatisfy { $0 == "_" || ($0.isASCII && ($0.isLowercase || $0.isNumber)) }
            if valid { settings.schema = schema } else {
                m.log.add("'ledger.schema' must be a lower-case identifier (a-z, 0-9, _; at most 63 characters)", at: m["schema"])
            }
        }
        settings.maxConnections = m.int("maxConnections", default: 8, range: 1...200)
        return .init(store: .postgres(settings), checkpointKeyFile: keyFile, checkpointInterval: interval)
    }

    static func parseUpstream(_ u: YAMLMap, base: URL) -> UpstreamConfiguration? {
        let kind = u.string("kind") ?? "csc"
        if kind == "pkcs11" { return parsePKCS11Upstream(u, base: base) }
        u.rejectUnknownKeys(["name", "kind", "baseURL", "version", "auth", "timeout", "connectTimeout", "maxConnections",
                             "credentialInfoTTL", "trustAnchors", "caFile"])
        guard let name = u.string("name", required: true) else { return nil }
        if kind != "csc" {
            u.log.add("upstream '\(name)': kind '\(kind)' is not supported (supported: csc, pkcs11)", at: u["kind"])
            return nil
        }
        guard let baseURL = u.string("baseURL", required: true) else { return nil }
        if URL(string: baseURL)?.scheme.map({ $0 == "http" || $0 == "https" }) != true {
            u.log.add("upstream '\(name)': baseURL must be an http or https URL", at: u["baseURL"])
        }
        let versionText = u.string("version") ?? "v1"
        let version = CSCVersion(rawValue: versionText) ?? {
            u.log.add("upstream '\(name)': version must be v1 or v2", at: u["version"])
            return .v1
        }()
        var auth = UpstreamConfiguration.Authentication.none
        if let a = u.map("auth") {
            a.rejectUnknownKeys(["type", "username", "passwordEnv", "passwordFile", "tokenURL", "clientID",
                                 "clientSecretEnv", "clientSecretFile"])
            switch a.string("type") ?? "none" {
            case "none": auth = .none
            case "basic":
                if let user = a.string("username", required: true), let secret = secretReference(a, "password", base: base) {
                    auth = .basic(username: user, password: secret)
                }
            case "oauth2-client":
                if let url = a.string("tokenURL", required: true), let id = a.string("clientID", required: true),
                   let secret = secretReference(a, "clientSecret", base: base) {
                    auth = .oauth2ClientCredentials(tokenURL: url, clientID: id, clientSecret: secret)
                }
            case let other:
                a.log.add("upstream '\(name)': auth type '\(other)' is not one of none, basic, oauth2-client", at: a["type"])
            }
        }
        var trimmed = baseURL
        while trimmed.hasSuffix("/") { trimmed.removeLast() }
        for suffix in ["/csc/v1", "/csc/v2"] where trimmed.hasSuffix(suffix) { trimmed.removeLast(suffix.count) }
        var upstream = UpstreamConfiguration(
            name: name, baseURL: trimmed, version: version, authentication: auth,
            timeout: u.double("timeout", default: 10, range: 0.05...300),
            connectTimeout: u.double("connectTimeout", default: 2, range: 0.05...60),
            maxConnections: u.int("maxConnections", default: 16, range: 1...1024),
            credentialInfoTTL: u.double("credentialInfoTTL", default: 60, range: 0...86400))
        upstream.trustAnchors = trustAnchors(u, base: base) ?? []
        if let caFile = u.string("caFile") {
            let resolved = resolve(caFile, base: base)
            if !FileManager.default.fileExists(atPath: resolved) {
                u.log.add("upstream '\(name)': caFile \(resolved) does not exist", at: u["caFile"])
            }
            upstream.caFile = resolved
        }
        return upstream
    }

    /// `kind: pkcs11`: module, token (label or slot), PIN reference, pool size, and the
    /// credentials on the token with how each is authorized.
    static func parsePKCS11Upstream(_ u: YAMLMap, base: URL) -> UpstreamConfiguration? {
        u.rejectUnknownKeys(["name", "kind", "module", "tokenLabel", "slot", "pinEnv", "pinFile", "sessions", "sadLifetime",
                             "inlineECDSA", "credentialInfoTTL", "credentials", "trustAnchors"])
        guard let name = u.string("name", required: true) else { return nil }
        let module = u.string("module", required: true).map { resolve($0, base: base) }
        if let module, !FileManager.default.fileExists(atPath: module) {
            u.log.add("upstream '\(name)': PKCS#11 module \(module) does not exist", at: u["module"])
        }
        let tokenLabel = u.string("tokenLabel")
        let slot = u["slot"] == nil ? nil : u.int("slot", default: 0, range: 0...Int(Int32.max))
        if tokenLabel == nil && slot == nil {
            u.log.add("upstream '\(name)': 'tokenLabel' (preferred) or 'slot' is required", at: u.node)
        }
        if u["pin"] != nil {
            u.log.add("upstream '\(name)': the token PIN is never written in YAML; use pinEnv or pinFile", at: u["pin"])
        }
        let pin = secretReference(u, "pin", base: base)
        var credentials = [LocalCredentialSettings]()
        var labels = Set<String>()
        for c in u.mapList("credentials") {
            guard let credential = parseLocalCredential(c, upstream: name, base: base) else { continue }
            if !labels.insert(credential.label).inserted {
                c.log.add("upstream '\(name)': credential '\(credential.label)' is defined twice", at: c.node)
            }
            credentials.append(credential)
        }
        guard let module, let pin else { return nil }
        let settings = PKCS11Settings(
            modulePath: module, tokenLabel: tokenLabel, slot: slot, pin: pin,
            sessions: u.int("sessions", default: 4, range: 1...256),
            sadLifetime: u.int("sadLifetime", default: 3600, range: 10...86400),
            inlineECDSA: u.bool("inlineECDSA", default: false), credentials: credentials)
        var upstream = UpstreamConfiguration(
            name: name, baseURL: "", version: .v1, authentication: .none, timeout: 30, connectTimeout: 2, maxConnections: 1,
            credentialInfoTTL: u.double("credentialInfoTTL", default: 60, range: 0...86400), pkcs11: settings)
        upstream.trustAnchors = trustAnchors(u, base: base) ?? []
        if let caFile = u.string("caFile") {
            let resolved = resolve(caFile, base: base)
            if !FileManager.default.fileExists(atPath: resolved) {
                u.log.add("upstream '\(name)': caFile \(resolved) does not exist", at: u["caFile"])
            }
            upstream.caFile = resolved
        }
        return upstream
    }

    static func parseLocalCredential(_ c: YAMLMap, upstream: String, base: URL) -> LocalCredentialSettings? {
        c.rejectUnknownKeys(["label", "authMode", "pin", "pinHash", "pinFormat", "maxPinFailures", "otp", "scal", "multisign",
                             "signatureQualifier", "description"])
        guard let label = c.string("label", required: true) else { return nil }
        let what = "upstream '\(upstream)', credential '\(label)'"
        if c["pin"] != nil {
            c.log.add("\(what): a PIN is never stored in clear; put the output of 'cscgate keys pin-hash' in pinHash", at: c["pin"])
        }
        let modeText = c.string("authMode") ?? "explicit"
        var mode = AuthMode.explicit
        switch modeText {
        case "implicit": mode = .implicit
        case "explicit": mode = .explicit
        default: c.log.add("\(what): authMode must be implicit or explicit", at: c["authMode"])
        }
        var pinHash: SecretHash?
        if let text = c.string("pinHash") {
            pinHash = SecretHash(encoded: text)
            if pinHash == nil { c.log.add("\(what): pinHash is not a hash made by 'cscgate keys pin-hash'", at: c["pinHash"]) }
        }
        let pinFormat = c.string("pinFormat") ?? "N"
        if pinFormat != "N" && pinFormat != "A" { c.log.add("\(what): pinFormat must be N or A", at: c["pinFormat"]) }
        var otp: OTPSettings?
        if let o = c.map("otp") {
            o.rejectUnknownKeys(["secretEnv", "secretFile", "digits", "period", "algorithm", "maxFailures"])
            let algorithm = OTPSettings.Algorithm(rawValue: (o.string("algorithm") ?? "SHA1").uppercased())
            if algorithm == nil { o.log.add("\(what): otp.algorithm must be SHA1, SHA256 or SHA512", at: o["algorithm"]) }
            if let secret = secretReference(o, "secret", base: base) {
                otp = OTPSettings(secret: secret, digits: o.int("digits", default: 6, range: 6...8),
                                  period: o.int("period", default: 30, range: 10...300), algorithm: algorithm ?? .sha1,
                                  maxFailures: o.int("maxFailures", default: 5, range: 1...100))
            }
        }
        if mode == .explicit && c["pinHash"] == nil && c["otp"] == nil {
            c.log.add("\(what): an explicit credential needs pinHash, otp or both", at: c.node)
        }
        if mode == .implicit && (c["pinHash"] != nil || c["otp"] != nil) {
            c.log.add("\(what): an implicit credential takes no PIN or OTP; use authMode: explicit", at: c["authMode"] ?? c.node)
        }
        let scalText = c["scal"].flatMap { $0.int.map(String.init) ?? $0.string } ?? "1"
        let scal = SCAL(rawValue: scalText) ?? {
            c.log.add("\(what): scal must be 1 or 2", at: c["scal"])
            return .one
        }()
        return LocalCredentialSettings(
            label: label, authMode: mode, pinHash: pinHash, pinFormat: pinFormat,
            maxPinFailures: c.int("maxPinFailures", default: 3, range: 1...100), otp: otp, scal: scal,
            multisign: c.int("multisign", default: 1, range: 1...100_000),
            signatureQualifier: c.string("signatureQualifier"), description: c.string("description"))
    }

    /// Secrets are named by `<key>Env` or `<key>File`; a literal value is refused.
    private static func secretReference(_ m: YAMLMap, _ key: String, base: URL) -> SecretReference? {
        if let env = m.string(key + "Env") { return .environment(env) }
        if let file = m.string(key + "File") { return .file(resolve(file, base: base)) }
        m.log.add("'\(m.key(key + "Env"))' or '\(m.key(key + "File"))' is required (secrets are never written in YAML)", at: m.node)
        return nil
    }

    static func parseTenant(_ text: String, fileStem: String, upstreams: Set<String>, log: IssueLog,
                            base: URL = URL(fileURLWithPath: ".")) -> TenantConfiguration? {
        guard let root = YAMLMap.document(text, log: log) else { return nil }
        root.rejectUnknownKeys(["tenant", "displayName", "clients", "credentials", "timestamp", "parent", "plan", "policies", "limits", "ocsp"])
        var failMode = CounterStoreFailureMode.closed
        if let l = root.map("limits") {
            l.rejectUnknownKeys(["counterStoreFailure"])
            if let text = l.string("counterStoreFailure") {
                if let mode = CounterStoreFailureMode(rawValue: text) { failMode = mode } else {
                    log.add("'limits.counterStoreFailure' must be open or closed", at: l["counterStoreFailure"])
                }
            }
        }
        let id = root.string("tenant") ?? fileStem
        if id != fileStem {
            log.add("tenant id '\(id)' must match the file name '\(fileStem)'", at: root["tenant"])
        }
        if !isIdentifier(id) {
            log.add("tenant id '\(id)' may use only letters, digits, '.', '_' and '-'", at: root["tenant"] ?? root.node)
        }
        var clients = [ClientConfiguration]()
        for c in root.mapList("clients") {
            c.rejectUnknownKeys(["id", "name", "secretHash", "secret", "scopes", "policies"])
            if c["secret"] != nil {
                log.add("'\(c.key("secret"))': client secrets are never stored in clear; use 'cscgate secret hash' and put the result in secretHash", at: c["secret"])
            }
            guard let cid = c.string("id", required: true) else { continue }
            guard let hashText = c.string("secretHash", required: true) else { continue }
            guard let hash = SecretHash(encoded: hashText) else {
                log.add("'\(c.key("secretHash"))' is not a hash made by 'cscgate secret hash'", at: c["secretHash"])
                continue
            }
            var scopes = Set(c.stringList("scopes"))
            if scopes.isEmpty { scopes = ["service"] }
            for s in scopes.subtracting(knownScopes) {
                log.add("'\(c.key("scopes"))': unknown scope '\(s)' (known: \(knownScopes.sorted().joined(separator: ", ")))", at: c["scopes"])
            }
            clients.append(ClientConfiguration(id: cid, line: c.line(of: "id"), name: c.string("name") ?? cid, secretHash: hash,
                                               scopes: scopes, policies: policyNames(c)))
        }
        var credentials = [CredentialRoute]()
        var seen = Set<String>()
        for c in root.mapList("credentials") {
            c.rejectUnknownKeys(["id", "upstream", "upstreamCredentialID", "description", "labels", "policies", "ocsp"])
            guard let cid = c.string("id", required: true), let upstream = c.string("upstream", required: true),
                  let upstreamID = c.string("upstreamCredentialID", required: true) else { continue }
            if !upstreams.contains(upstream) {
                log.add("credential '\(cid)': upstream '\(upstream)' is not defined in gateway.yaml", at: c["upstream"])
            }
            if !seen.insert(cid).inserted {
                log.add("credential '\(cid)' is defined twice", at: c.node)
            }
            var route = CredentialRoute(id: cid, upstream: upstream, upstreamCredentialID: upstreamID,
                                        description: c.string("description"), line: c.line(of: "upstreamCredentialID"),
                                        labels: labels(c), policies: policyNames(c))
            route.signerCertificates = signerOverrides(c.map("ocsp"), base: base, allowAnchors: false)
            credentials.append(route)
        }
        var timestampUpstream: String?, timestampClientData: String?
        if let ts = root.map("timestamp") {
            ts.rejectUnknownKeys(["upstream", "clientData"])
            timestampClientData = ts.string("clientData")
            timestampUpstream = ts.string("upstream", required: true)
            if let t = timestampUpstream, !upstreams.contains(t) {
                log.add("timestamp upstream '\(t)' is not defined in gateway.yaml", at: ts["upstream"])
            }
        }
        let parent = root.string("parent")
        if let parent, parent == id {
            log.add("tenant '\(id)' cannot be its own parent", at: root["parent"])
        }
        var tenant = TenantConfiguration(id: id, displayName: root.string("displayName") ?? id, clients: clients,
                                         credentials: credentials, timestampUpstream: timestampUpstream,
                                         timestampClientData: timestampClientData, parent: parent,
                                         parentLine: root.line(of: "parent"), plan: root.map("plan").flatMap(parsePlan),
                                         policies: policyNames(root), policiesLine: root.line(of: "policies"),
                                         counterStoreFailure: failMode)
        tenant.signerCertificates = signerOverrides(root.map("ocsp"), base: base, allowAnchors: true)
        return tenant
    }

    static func policyNames(_ m: YAMLMap) -> [String] {
        let names = m.stringList("policies")
        for n in names where !isIdentifier(n) {
            m.log.add("'\(m.key("policies"))': '\(n)' is not a policy name (the file name without .yaml)", at: m["policies"])
        }
        return names
    }

    static func labels(_ m: YAMLMap) -> [String: String] {
        guard let map = m.map("labels") else { return [:] }
        var out = [String: String]()
        for (k, _) in map.pairs {
            if let v = map.string(k) { out[k] = v }
        }
        return out
    }

    static func parsePlan(_ p: YAMLMap) -> TenantPlan? {
        p.rejectUnknownKeys(["currency", "monthlyFee", "includedSignatures", "pricePerSignature", "overagePrice",
                             "monthlyQuota", "quotaThresholds"])
        guard let currency = p.string("currency", required: true) else { return nil }
        if currency.count != 3 || !currency.unicodeScalars.allSatisfy({ ("A"..."Z").contains($0) }) {
            p.log.add("'\(p.key("currency"))' must be an ISO 4217 code such as EUR", at: p["currency"])
        }
        let pricePerSignature = money(p, "pricePerSignature") ?? 0
        var plan = TenantPlan(currency: currency, monthlyFee: money(p, "monthlyFee") ?? 0,
                              includedSignatures: p.int("includedSignatures", default: 0, range: 0...Int(Int32.max)),
                              pricePerSignature: pricePerSignature,
                              overagePrice: money(p, "overagePrice") ?? pricePerSignature)
        if p["monthlyQuota"] != nil {
            plan.monthlyQuota = p.int("monthlyQuota", default: 0, range: 1...Int(Int32.max))
        }
        if p["quotaThresholds"] != nil {
            var thresholds = [Int]()
            for (i, node) in p.list("quotaThresholds") {
                guard let v = node.int, (1...99).contains(v) else {
                    p.log.add("'\(p.key("quotaThresholds"))[\(i)]' must be a percentage between 1 and 99", at: node)
                    continue
                }
                thresholds.append(v)
            }
            plan.quotaThresholds = Array(Set(thresholds)).sorted()
        }
        return plan
    }

    /// Prices are decimals written as in YAML (`0.05`, `"0.05"`), never binary floats: an
    /// invoice must add up to the cent.
    static func money(_ m: YAMLMap, _ name: String) -> Decimal? {
        guard let node = m[name] else { return nil }
        guard case .scalar(let s) = node, let d = Decimal(string: s.string, locale: Locale(identifier: "en_US_POSIX")),
              !d.isNaN, d >= 0, s.string.range(of: #"^[0-9]+(\.[0-9]{1,6})?$"#, options: .regularExpression) != nil else {
            m.log.add("'\(m.key(name))' must be a non-negative decimal amount with at most 6 decimals, e.g. 0.05", at: node)
            return nil
        }
        return d
    }

    /// Client ids authenticate on their own (Basic, OAuth2), so they must be unique gateway-wide.
    static func crossCheck(_ tenants: [TenantConfiguration], files: [String: String], tenantsDirectory: String) -> [ConfigurationIssue] {
        var owner = [String: String]()
        var issues = [ConfigurationIssue]()
        for t in tenants {
            for c in t.clients {
                if let other = owner[c.id] {
                    issues.append(ConfigurationIssue(file: files[t.id] ?? "\(tenantsDirectory)/\(t.id).yaml", line: c.line,
                                                     message: "client id '\(c.id)' is already used by tenant '\(other)'"))
                } else {
                    owner[c.id] = t.id
                }
            }
        }
        return issues
    }

    /// A parent must exist, and following parents must end: a reseller hierarchy with a cycle
    /// would let two resellers read each other's customers.
    static func checkParents(_ tenants: [TenantConfiguration], files: [String: String]) -> [ConfigurationIssue] {
        let parentOf = Dictionary(tenants.map { ($0.id, $0.parent) }, uniquingKeysWith: { a, _ in a })
        var issues = [ConfigurationIssue]()
        for t in tenants {
            guard let p = t.parent else { continue }
            let file = files[t.id] ?? t.id
            guard parentOf[p] != nil else {
                issues.append(ConfigurationIssue(file: file, line: t.parentLine, message: "parent tenant '\(p)' is not defined"))
                continue
            }
            var seen: Set<String> = [t.id]
            var next: String? = p
            while let n = next {
                if !seen.insert(n).inserted {
                    issues.append(ConfigurationIssue(file: file, line: t.parentLine, message: "tenant '\(t.id)' is its own ancestor through 'parent'"))
                    break
                }
                next = parentOf[n] ?? nil
            }
        }
        return issues
    }

    /// A route to a local HSM must name a key the HSM upstream describes; otherwise the first
    /// signature would fail with a 502 instead of the operator hearing of it here.
    static func checkHSMRoutes(_ tenants: [TenantConfiguration], upstreams: [UpstreamConfiguration],
                               files: [String: String]) -> [ConfigurationIssue] {
        var labels = [String: Set<String>]()
        for u in upstreams { if let p = u.pkcs11 { labels[u.name] = Set(p.credentials.map(\.label)) } }
        var issues = [ConfigurationIssue]()
        for t in tenants {
            for r in t.credentials {
                guard let known = labels[r.upstream], !known.contains(r.upstreamCredentialID) else { continue }
                issues.append(ConfigurationIssue(
                    file: files[t.id] ?? t.id, line: r.line,
                    message: "credential '\(r.id)': HSM upstream '\(r.upstream)' has no credential labelled '\(r.upstreamCredentialID)' (known: \(known.sorted().joined(separator: ", ")))"))
            }
        }
        return issues
    }

    /// With OCSP on, every credential needs anchors (its tenant's or its upstream's): without
    /// them every signature would be refused as untrusted, better said here than at the first one.
    static func checkTrustAnchors(_ tenants: [TenantConfiguration], gateway: GatewayConfiguration,
                                  files: [String: String]) -> [ConfigurationIssue] {
        guard gateway.ocsp.enabled else { return [] }
        let anchors = Dictionary(gateway.upstreams.map { ($0.name, $0.trustAnchors) }, uniquingKeysWith: { a, _ in a })
        var issues = [ConfigurationIssue]()
        for t in tenants where t.signerCertificates.trustAnchors?.isEmpty ?? true {
            for r in t.credentials where anchors[r.upstream]?.isEmpty ?? true {
                issues.append(ConfigurationIssue(
                    file: files[t.id] ?? t.id, line: r.line,
                    message: "credential '\(r.id)': ocsp is enabled but neither tenant '\(t.id)' (ocsp.trustAnchors) nor upstream '\(r.upstream)' (trustAnchors) names trust anchors"))
            }
        }
        return issues
    }

    /// Every policy a tenant, client or credential names must exist (a file with errors is
    /// already reported where it is wrong).
    static func checkPolicyReferences(_ tenants: [TenantConfiguration], known: Set<String>, failed: [String],
                                      files: [String: String]) -> [ConfigurationIssue] {
        let broken = Set(failed.map { URL(fileURLWithPath: $0).deletingPathExtension().lastPathComponent })
        var issues = [ConfigurationIssue]()
        for t in tenants {
            let file = files[t.id] ?? t.id
            func check(_ names: [String], line: Int?, what: String) {
                for n in names where !known.contains(n) && !broken.contains(n) {
                    issues.append(ConfigurationIssue(file: file, line: line, message: "\(what): policy '\(n)' is not defined in policies/"))
                }
            }
            check(t.policies, line: t.policiesLine, what: "tenant '\(t.id)'")
            for c in t.clients { check(c.policies, line: c.line, what: "client '\(c.id)'") }
            for r in t.credentials { check(r.policies, line: r.line, what: "credential '\(r.id)'") }
        }
        return issues
    }

    static func isIdentifier(_ s: String) -> Bool {
        !s.isEmpty && s.count <= 128 && s.unicodeScalars.allSatisfy {
            CharacterSet.alphanumerics.contains($0) || $0 == "." || $0 == "_" || $0 == "-"
        }
    }
}
