import CSC
import Foundation
@testable import GatewayCore
import Testing

// DESIGN.md "Configuration on disk": everything is validated with errors that name the file
// and the line, and nothing half-valid is ever returned.

/// A configuration folder: gateway.yaml and tenants/*.yaml, valid unless a test spoils it.
struct ConfigFolder {
    let dir: TempDirectory
    var gateway: String
    var tenants: [String: String]
    /// `policies/<name>`: written next to the tenants (the gateway's default policies folder).
    var policies: [String: String] = [:]

    static let validGateway = """
        listen:
          host: 0.0.0.0
          port: 8443
        publicURL: https://gw.example
        tenants: tenants
        limits:
          maxBodyBytes: 65536
        upstreams:
          - name: vendor-a
            baseURL: https://rssp-a.example/csc/v1/
            version: v1
            auth:
              type: basic
              username: gateway
              passwordEnv: VENDOR_A_PASSWORD
          - name: vendor-b
            baseURL: https://rssp-b.example/base/
            version: v2
            timeout: 2.5
        """

    static let validAcme = """
        tenant: acme
        displayName: ACME Corp
        clients:
          - id: acme-app
            name: ACME signing app
            secretHash: "\(Secrets.appHash.encoded)"
        credentials:
          - id: acme-rsa
            upstream: vendor-a
            upstreamCredentialID: a/rsa-signer
            description: RSA at vendor A
          - id: acme-ec
            upstream: vendor-b
            upstreamCredentialID: b/ec-signer
        """

    init() throws {
        dir = try TempDirectory()
        gateway = Self.validGateway
        tenants = ["acme.yaml": Self.validAcme]
    }

    var gatewayFile: String { dir.path + "/gateway.yaml" }
    func tenantFile(_ name: String) -> String { dir.path + "/tenants/" + name }

    func load() throws -> LoadedConfiguration {
        try dir.write("gateway.yaml", gateway)
        for (name, text) in tenants { try dir.write("tenants/" + name, text) }
        for (name, text) in policies { try dir.write("policies/" + name, text) }
        return try ConfigurationLoader.load(gatewayFile: gatewayFile)
    }

    /// The issues a spoiled configuration produces; records a failure if it loads.
    func issues() throws -> [ConfigurationIssue] {
        do {
            _ = try load()
            Issue.record("the configuration loaded, but it should have been refused")
            return []
        } catch let error as ConfigurationError {
            return error.issues
        }
    }

    /// The one issue whose message contains `text`, with its file and line checked.
    func expectIssue(_ text: String, file: String, line: Int?, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let all = try issues()
        guard let issue = all.first(where: { $0.message.contains(text) }) else {
            Issue.record("no issue mentions \"\(text)\"; got:\n\(all.map(\.description).joined(separator: "\n"))",
                         sourceLocation: sourceLocation)
            return
        }
        #expect(URL(fileURLWithPath: issue.file).standardizedFileURL.path == URL(fileURLWithPath: file).standardizedFileURL.path,
                "wrong file in: \(issue)", sourceLocation: sourceLocation)
        #expect(issue.line != nil, "no line in: \(issue)", sourceLocation: sourceLocation)
        if let line { #expect(issue.line == line, "wrong line in: \(issue)", sourceLocation: sourceLocation) }
    }
}

private func replacing(_ text: String, _ old: String, with new: String) -> String {
    precondition(text.contains(old), "fixture does not contain \(old)")
    return text.replacingOccurrences(of: old, with: new)
}

@Suite("ConfigurationLoader")
struct ConfigurationLoaderTests {
    @Test("a valid configuration loads with the expected values")
    func validLoads() throws {
        let folder = try ConfigFolder()
        let loaded = try folder.load()
        let g = loaded.gateway
        #expect(g.host == "0.0.0.0")
        #expect(g.port == 8443)
        #expect(g.publicURL == "https://gw.example")
        #expect(g.maxBodyBytes == 65536)
        #expect(g.maxHashesPerRequest == 1000)
        // Relative paths are resolved against the folder of gateway.yaml, not the working directory.
        #expect(g.tenantsDirectory == folder.dir.url.appendingPathComponent("tenants").standardizedFileURL.path)
        #expect(g.policiesDirectory == folder.dir.url.appendingPathComponent("policies").standardizedFileURL.path)

        #expect(g.upstreams.map(\.name) == ["vendor-a", "vendor-b"])
        // The base URL is stored up to and excluding /csc/vN.
        #expect(g.upstreams[0].baseURL == "https://rssp-a.example")
        #expect(g.upstreams[0].version == .v1)
        #expect(g.upstreams[0].authentication == .basic(username: "gateway", password: .environment("VENDOR_A_PASSWORD")))
        #expect(g.upstreams[1].baseURL == "https://rssp-b.example/base")
        #expect(g.upstreams[1].version == .v2)
        #expect(g.upstreams[1].authentication == UpstreamConfiguration.Authentication.none)
        #expect(g.upstreams[1].timeout == 2.5)

        let acme = try #require(loaded.tenants.first)
        #expect(loaded.tenants.count == 1)
        #expect(acme.id == "acme")
        #expect(acme.displayName == "ACME Corp")
        #expect(acme.clients.map(\.id) == ["acme-app"])
        #expect(acme.clients[0].scopes == ["service"])
        #expect(acme.clients[0].secretHash.verify(Secrets.appSecret))
        #expect(acme.credentials == [
            CredentialRoute(id: "acme-rsa", upstream: "vendor-a", upstreamCredentialID: "a/rsa-signer",
                            description: "RSA at vendor A"),
            CredentialRoute(id: "acme-ec", upstream: "vendor-b", upstreamCredentialID: "b/ec-signer", description: nil),
        ])
    }

    @Test("a baseURL given with /csc/v2 is trimmed too")
    func baseURLv2Trimmed() throws {
        var folder = try ConfigFolder()
        folder.gateway = replacing(folder.gateway, "https://rssp-b.example/base/", with: "https://rssp-b.example/base/csc/v2")
        #expect(try folder.load().gateway.upstreams[1].baseURL == "https://rssp-b.example/base")
    }

    // MARK: gateway.yaml

    @Test("an unknown key names file and line")
    func unknownKey() throws {
        var folder = try ConfigFolder()
        folder.gateway = replacing(folder.gateway, "  port: 8443\n", with: "  port: 8443\n  backlog: 128\n")
        try folder.expectIssue("unknown key 'listen.backlog'", file: folder.gatewayFile,
                               line: line(of: "backlog", in: folder.gateway))
    }

    @Test("a shared permit lease not longer than the slowest upstream timeout is refused, with its line")
    func permitLeaseAgainstUpstreamTimeout() throws {
        var folder = try ConfigFolder()
        folder.gateway += "\ncounters:\n  url: postgres://gw@db.internal/cscgate\n  permitLease: 5\n"
        try folder.expectIssue("'counters.permitLease' (5.0 s) must be longer than the slowest upstream timeout",
                               file: folder.gatewayFile, line: line(of: "permitLease", in: folder.gateway))
        folder.gateway = replacing(folder.gateway, "permitLease: 5", with: "permitLease: 600")
        #expect(try folder.load().gateway.counters.permitLease == 600)
    }

    @Test("shared sessions need a url and the same SAD key on every instance; their settings load")
    func sharedSessions() throws {
        var folder = try ConfigFolder()
        folder.gateway += "\nsessions:\n  url: postgres://gw@db.internal/cscgate\n  timeout: 0.3\n"
        try folder.expectIssue("'sessions.url': shared sessions need the same SAD key on every instance",
                               file: folder.gatewayFile, line: line(of: "url: postgres", in: folder.gateway))
        folder.gateway += "sad:\n  keyEnv: CSCGATE_SAD_KEY\n"
        let loaded = try folder.load().gateway.sessions
        #expect(loaded.postgres?.host == "db.internal" && loaded.postgres?.database == "cscgate" && loaded.timeout == 0.3)
        folder.gateway = replacing(folder.gateway, "  url: postgres://gw@db.internal/cscgate\n", with: "  schema: s\n")
        try folder.expectIssue("'sessions.url' is required", file: folder.gatewayFile, line: line(of: "schema: s", in: folder.gateway))
        #expect(try ConfigFolder().load().gateway.sessions.postgres == nil, "in this process unless configured")
    }

    @Test("an unknown key in a tenant file names that file and line")
    func unknownTenantKey() throws {
        var folder = try ConfigFolder()
        folder.tenants["acme.yaml"] = ConfigFolder.validAcme + "\nquota: 1000\n"
        try folder.expectIssue("unknown key 'quota'", file: folder.tenantFile("acme.yaml"),
                               line: line(of: "quota", in: folder.tenants["acme.yaml"]!))
    }

    @Test("a missing required key names file and the line of its block")
    func missingRequiredKey() throws {
        var folder = try ConfigFolder()
        folder.gateway = replacing(folder.gateway, "    baseURL: https://rssp-b.example/base/\n", with: "")
        try folder.expectIssue("missing required key 'upstreams[1].baseURL'", file: folder.gatewayFile,
                               line: line(of: "name: vendor-b", in: folder.gateway))
    }

    @Test("a missing required key in a tenant names file and line")
    func missingTenantKey() throws {
        var folder = try ConfigFolder()
        let acme = replacing(ConfigFolder.validAcme, "    upstreamCredentialID: b/ec-signer", with: "")
        folder.tenants["acme.yaml"] = acme
        try folder.expectIssue("missing required key 'credentials[1].upstreamCredentialID'",
                               file: folder.tenantFile("acme.yaml"), line: line(of: "id: acme-ec", in: acme))
    }

    @Test("invalid YAML syntax names file and the line of the error")
    func invalidSyntax() throws {
        var folder = try ConfigFolder()
        folder.gateway = replacing(folder.gateway, "  port: 8443\n", with: "  port: 8443: 9\n")
        try folder.expectIssue("not valid YAML", file: folder.gatewayFile, line: line(of: "8443: 9", in: folder.gateway))
    }

    @Test("invalid YAML in a tenant file names that file and line")
    func invalidTenantSyntax() throws {
        var folder = try ConfigFolder()
        let acme = replacing(ConfigFolder.validAcme, "displayName: ACME Corp", with: "displayName: [ACME Corp")
        folder.tenants["acme.yaml"] = acme
        let issues = try folder.issues()
        let issue = try #require(issues.first { $0.message.contains("not valid YAML") })
        #expect(issue.file.hasSuffix("/tenants/acme.yaml"))
        let l = try #require(issue.line)
        #expect(l >= line(of: "displayName", in: acme)!)
    }

    @Test("a key given twice names file and line")
    func duplicateKey() throws {
        var folder = try ConfigFolder()
        folder.gateway = replacing(folder.gateway, "publicURL: https://gw.example\n",
                                   with: "publicURL: https://gw.example\npublicURL: https://other.example\n")
        let issues = try folder.issues()
        let issue = try #require(issues.first)
        #expect(issue.file == folder.gatewayFile)
        #expect(issue.line != nil, "no line in: \(issue)")
    }

    @Test("a bad version names file and line")
    func badVersion() throws {
        var folder = try ConfigFolder()
        folder.gateway = replacing(folder.gateway, "version: v2", with: "version: v3")
        try folder.expectIssue("upstream 'vendor-b': version must be v1 or v2", file: folder.gatewayFile,
                               line: line(of: "version: v3", in: folder.gateway))
    }

    @Test("a port out of range names file and line", arguments: ["0", "70000", "http"])
    func portOutOfRange(_ port: String) throws {
        var folder = try ConfigFolder()
        folder.gateway = replacing(folder.gateway, "port: 8443", with: "port: \(port)")
        try folder.expectIssue("'listen.port' must be an integer between 1 and 65535", file: folder.gatewayFile,
                               line: line(of: "port: \(port)", in: folder.gateway))
    }

    @Test("upstream auth without passwordEnv or passwordFile names file and the auth block")
    func authWithoutSecretReference() throws {
        var folder = try ConfigFolder()
        folder.gateway = replacing(folder.gateway, "      passwordEnv: VENDOR_A_PASSWORD\n", with: "")
        let issues = try folder.issues()
        let issue = try #require(issues.first { $0.message.contains("'upstreams[0].auth.passwordEnv' or 'upstreams[0].auth.passwordFile' is required") })
        #expect(issue.file == folder.gatewayFile)
        let authLine = try #require(line(of: "auth:", in: folder.gateway))
        let l = try #require(issue.line)
        #expect((authLine...authLine + 1).contains(l), "line \(l) is not in the auth block")
    }

    @Test("a literal upstream password is refused and never repeated in the error")
    func literalUpstreamPassword() throws {
        var folder = try ConfigFolder()
        folder.gateway = replacing(folder.gateway, "      passwordEnv: VENDOR_A_PASSWORD\n",
                                   with: "      password: Hunter2-very-secret\n")
        let issues = try folder.issues()
        #expect(issues.contains { $0.message.contains("unknown key 'upstreams[0].auth.password'") })
        #expect(!issues.contains { $0.description.contains("Hunter2") })
    }

    @Test("a tenants directory that does not exist is reported")
    func missingTenantsDirectory() throws {
        var folder = try ConfigFolder()
        folder.gateway = replacing(folder.gateway, "tenants: tenants", with: "tenants: elsewhere")
        let issues = try folder.issues()
        #expect(issues.contains { $0.message.contains("does not exist") && $0.file == folder.gatewayFile })
    }

    // MARK: tenants/*.yaml

    @Test("a credential on an upstream gateway.yaml does not define names file and line")
    func undefinedUpstream() throws {
        var folder = try ConfigFolder()
        let acme = replacing(ConfigFolder.validAcme, "upstream: vendor-b", with: "upstream: vendor-z")
        folder.tenants["acme.yaml"] = acme
        try folder.expectIssue("credential 'acme-ec': upstream 'vendor-z' is not defined in gateway.yaml",
                               file: folder.tenantFile("acme.yaml"), line: line(of: "vendor-z", in: acme))
    }

    @Test("a credential id defined twice names file and the second definition")
    func duplicateCredential() throws {
        var folder = try ConfigFolder()
        let acme = replacing(ConfigFolder.validAcme, "  - id: acme-ec", with: "  - id: acme-rsa")
        folder.tenants["acme.yaml"] = acme
        try folder.expectIssue("credential 'acme-rsa' is defined twice", file: folder.tenantFile("acme.yaml"),
                               line: line(of: "- id: acme-rsa", in: acme, occurrence: 2))
    }

    @Test("a route to an HSM key the pkcs11 upstream does not describe names the tenant file and line")
    func unknownHSMLabel() throws {
        var folder = try ConfigFolder()
        folder.gateway += """

              - name: hsm
                kind: pkcs11
                module: /usr/lib/softhsm/libsofthsm2.so
                tokenLabel: t
                pinEnv: HSM_PIN
                credentials:
                  - {label: known-key, authMode: implicit}
            """
        let acme = ConfigFolder.validAcme + """

              - id: acme-hsm
                upstream: hsm
                upstreamCredentialID: missing-key
            """
        folder.tenants["acme.yaml"] = acme
        try folder.expectIssue("HSM upstream 'hsm' has no credential labelled 'missing-key' (known: known-key)",
                               file: folder.tenantFile("acme.yaml"), line: line(of: "upstreamCredentialID: missing-key", in: acme))
    }

    @Test("ECDSA signs on the HSM pool's threads unless inlineECDSA says the module is in-process and fast")
    func inlineECDSA() throws {
        let hsm = { (extra: String) in """

              - name: hsm
                kind: pkcs11
                module: /usr/lib/softhsm/libsofthsm2.so
                tokenLabel: t
                pinEnv: HSM_PIN\(extra)
                credentials:
                  - {label: known-key, authMode: implicit}
            """ }
        for (extra, expected) in [("", false), ("\n    inlineECDSA: true", true), ("\n    inlineECDSA: false", false)] {
            var folder = try ConfigFolder()
            folder.gateway += hsm(extra)
            let upstream = try folder.load().gateway.upstreams.first { $0.name == "hsm" }
            #expect(upstream?.pkcs11?.inlineECDSA == expected, "\(extra)")
        }
        var folder = try ConfigFolder()
        folder.gateway += hsm("\n    inlineECDSA: sometimes")
        try folder.expectIssue("'upstreams[2].inlineECDSA' must be true or false", file: folder.gatewayFile,
                               line: line(of: "inlineECDSA: sometimes", in: folder.gateway))
    }

    @Test("a client id used by two tenants names the second file and its line")
    func duplicateClientAcrossTenants() throws {
        var folder = try ConfigFolder()
        let beta = """
            tenant: beta
            clients:
              - id: beta-app
                secretHash: "\(Secrets.appHash.encoded)"
              - id: acme-app
                secretHash: "\(Secrets.appHash.encoded)"
            """
        folder.tenants["beta.yaml"] = beta
        try folder.expectIssue("client id 'acme-app' is already used by tenant 'acme'", file: folder.tenantFile("beta.yaml"),
                               line: line(of: "- id: acme-app", in: beta))
    }

    @Test("a literal client secret is refused, with file and line, without repeating it")
    func literalSecret() throws {
        var folder = try ConfigFolder()
        let acme = replacing(ConfigFolder.validAcme, "    secretHash: \"\(Secrets.appHash.encoded)\"",
                             with: "    secret: Swordfish-0123456789")
        folder.tenants["acme.yaml"] = acme
        try folder.expectIssue("client secrets are never stored in clear", file: folder.tenantFile("acme.yaml"),
                               line: line(of: "secret: Swordfish", in: acme))
        #expect(try !folder.issues().contains { $0.description.contains("Swordfish") })
    }

    @Test("a secretHash that is not one names file and line", arguments: [
        "plain-text-secret", "$scrypt$ln=14$AAAA$BBBB", "$scrypt$ln=4,r=8,p=1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
    ])
    func badSecretHash(_ value: String) throws {
        var folder = try ConfigFolder()
        let acme = replacing(ConfigFolder.validAcme, "secretHash: \"\(Secrets.appHash.encoded)\"",
                             with: "secretHash: \"\(value)\"")
        folder.tenants["acme.yaml"] = acme
        try folder.expectIssue("'clients[0].secretHash' is not a hash made by 'cscgate secret hash'",
                               file: folder.tenantFile("acme.yaml"), line: line(of: "secretHash", in: acme))
    }

    @Test("a tenant id that differs from its file name names file and line")
    func tenantIDMismatch() throws {
        var folder = try ConfigFolder()
        let acme = replacing(ConfigFolder.validAcme, "tenant: acme", with: "tenant: acme-corp")
        folder.tenants["acme.yaml"] = acme
        try folder.expectIssue("tenant id 'acme-corp' must match the file name 'acme'", file: folder.tenantFile("acme.yaml"),
                               line: line(of: "tenant: acme-corp", in: acme))
    }

    @Test("two files for one tenant (acme.yaml and acme.yml) are refused, not silently merged")
    func twoFilesOneTenant() throws {
        var folder = try ConfigFolder()
        folder.tenants["acme.yml"] = replacing(ConfigFolder.validAcme, "  - id: acme-app", with: "  - id: acme-app-old")
        let issues = try folder.issues()
        #expect(issues.contains { $0.message.contains("acme") && $0.file.hasSuffix("acme.yml") })
    }

    @Test("an unknown scope names file and line")
    func unknownScope() throws {
        var folder = try ConfigFolder()
        let acme = replacing(ConfigFolder.validAcme, "    name: ACME signing app\n",
                             with: "    name: ACME signing app\n    scopes: [service, admin]\n")
        folder.tenants["acme.yaml"] = acme
        try folder.expectIssue("unknown scope 'admin'", file: folder.tenantFile("acme.yaml"),
                               line: line(of: "scopes:", in: acme))
    }

    @Test("every problem is reported in one run")
    func allProblemsAtOnce() throws {
        var folder = try ConfigFolder()
        folder.gateway = replacing(folder.gateway, "port: 8443", with: "port: 0")
        folder.tenants["acme.yaml"] = replacing(ConfigFolder.validAcme, "upstream: vendor-b", with: "upstream: nowhere")
        let issues = try folder.issues()
        #expect(issues.contains { $0.message.contains("listen.port") })
        #expect(issues.contains { $0.message.contains("nowhere") })
    }

    @Test("the ledger is on unless ledger.enabled is false, and enabled must be a boolean")
    func ledgerEnabled() throws {
        var folder = try ConfigFolder()
        #expect(try folder.load().gateway.ledger.enabled)
        folder.gateway += "\nledger:\n  enabled: false\n"
        #expect(try !folder.load().gateway.ledger.enabled)
        folder.gateway = ConfigFolder.validGateway + "\nledger:\n  enabled: sometimes\n"
        try folder.expectIssue("'ledger.enabled' must be true or false", file: folder.gatewayFile, line: nil)
    }

    @Test("the SQLite journal: its directory, commit delay and apply interval, with defaults and bounds")
    func ledgerJournal() throws {
        var folder = try ConfigFolder()
        var ledger = try folder.load().gateway.ledger
        #expect(ledger.journalDirectory == nil, "default: beside the file")
        #expect(ledger.commitDelay == 0 && ledger.applyInterval == 500 && ledger.reservationHold == 5)
        folder.gateway += "\nledger:\n  path: l.sqlite\n  journal: fast/journal\n  commitDelay: 0.5\n  applyInterval: 1000\n  reservationHold: 0\n"
        ledger = try folder.load().gateway.ledger
        #expect(ledger.journalDirectory?.hasSuffix("/fast/journal") == true)
        #expect(ledger.commitDelay == 0.5 && ledger.applyInterval == 1000 && ledger.reservationHold == 0)
        folder.gateway = ConfigFolder.validGateway + "\nledger:\n  reservationHold: 60\n"
        try folder.expectIssue("'ledger.reservationHold' must be a number between 0.0 and 50.0", file: folder.gatewayFile, line: nil)
        folder.gateway = ConfigFolder.validGateway + "\nledger:\n  commitDelay: 50\n"
        try folder.expectIssue("'ledger.commitDelay' must be a number between 0.0 and 10.0", file: folder.gatewayFile, line: nil)
        folder.gateway = ConfigFolder.validGateway + "\nledger:\n  applyInterval: 0\n"
        try folder.expectIssue("'ledger.applyInterval' must be a number between 1.0 and 60000.0", file: folder.gatewayFile, line: nil)
        folder.gateway = ConfigFolder.validGateway + "\nledger:\n  url: postgres://u@h/db\n  commitDelay: 1\n"
        try folder.expectIssue("'ledger.commitDelay' applies to a SQLite ledger only", file: folder.gatewayFile, line: nil)
    }
}
