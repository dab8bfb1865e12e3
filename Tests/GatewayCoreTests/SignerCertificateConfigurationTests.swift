import Foundation
@testable import GatewayCore
import Testing

// Issue 4: OCSP settings in gateway.yaml, failure mode and key usage per tenant or credential,
// trust anchors per upstream or tenant; every mistake named with file and line.

@Suite("Signer-certificate configuration")
struct SignerCertificateConfigurationTests {
    static let ocspBlock = """
        ocsp:
          enabled: true
          failureMode: soft
          timeout: 1.5
          maxAge: 600
          clockSkew: 30
          get: false
          getMaxBytes: 200
          responders:
            - issuer: "CN=Issuing CA,O=Vendor A,C=BE"
              url: http://127.0.0.1:9999/ocsp
        """

    func folder(anchors: Bool = true) throws -> ConfigFolder {
        var folder = try ConfigFolder()
        let anchor = try folder.dir.write("anchors/root.pem", "placeholder")
        folder.gateway += "\n" + Self.ocspBlock + "\n"
        if anchors {
            folder.gateway = folder.gateway.replacingOccurrences(
                of: "    version: v1\n", with: "    version: v1\n    trustAnchors: [\(anchor)]\n")
                .replacingOccurrences(of: "    timeout: 2.5\n", with: "    timeout: 2.5\n    trustAnchors: [anchors/root.pem]\n")
        }
        return folder
    }

    @Test("ocsp settings, anchors and overrides load; the credential's choice beats the tenant's and the gateway's")
    func loads() throws {
        var f = try folder()
        f.tenants["acme.yaml"] = ConfigFolder.validAcme.replacingOccurrences(
            of: "    upstreamCredentialID: b/ec-signer", with: "    upstreamCredentialID: b/ec-signer\n    ocsp: {failureMode: hard}")
            + "\nocsp:\n  keyUsage: nonRepudiation\n"
        let loaded = try f.load()
        let o = loaded.gateway.ocsp
        #expect(o.enabled && o.failureMode == .soft && o.timeout == 1.5 && o.maxAge == 600 && o.clockSkew == 30)
        #expect(!o.get && o.getMaxBytes == 200)
        #expect(o.responders == [.init(issuer: "CN=Issuing CA,O=Vendor A,C=BE", url: "http://127.0.0.1:9999/ocsp")])
        #expect(loaded.gateway.upstreams[1].trustAnchors == [f.dir.path + "/anchors/root.pem"])
        let acme = try #require(loaded.tenants.first)
        let rsa = try #require(acme.credentials.first { $0.id == "acme-rsa" })
        let ec = try #require(acme.credentials.first { $0.id == "acme-ec" })
        let pRSA = SignerCertificatePolicy.resolve(for: rsa, tenant: acme, gateway: loaded.gateway)
        let pEC = SignerCertificatePolicy.resolve(for: ec, tenant: acme, gateway: loaded.gateway)
        #expect(pRSA.failureMode == .soft && pRSA.keyUsage == .nonRepudiation)
        #expect(pEC.failureMode == .hard && pEC.keyUsage == .nonRepudiation)
        #expect(pEC.trustAnchors == [f.dir.path + "/anchors/root.pem"])
    }

    @Test("without an ocsp block nothing is checked")
    func offByDefault() throws {
        #expect(try ConfigFolder().load().gateway.ocsp.enabled == false)
    }

    @Test("a bad failure mode is named with its line")
    func badMode() throws {
        var f = try folder()
        f.gateway = f.gateway.replacingOccurrences(of: "failureMode: soft", with: "failureMode: sometimes")
        try f.expectIssue("must be hard or soft", file: f.gatewayFile, line: line(of: "failureMode: sometimes", in: f.gateway))
    }

    @Test("a credential without trust anchors is refused while ocsp is on")
    func anchorsRequired() throws {
        let f = try folder(anchors: false)
        try f.expectIssue("names trust anchors", file: f.tenantFile("acme.yaml"), line: nil)
    }

    @Test("a missing anchor file is refused")
    func missingAnchorFile() throws {
        var f = try folder()
        f.gateway = f.gateway.replacingOccurrences(of: "[anchors/root.pem]", with: "[anchors/nope.pem]")
        try f.expectIssue("nope.pem does not exist", file: f.gatewayFile, line: nil)
    }

    @Test("a responder URL must be http(s)")
    func responderURL() throws {
        var f = try folder()
        f.gateway = f.gateway.replacingOccurrences(of: "url: http://127.0.0.1:9999/ocsp", with: "url: ldap://x")
        try f.expectIssue("must be an http or https URL", file: f.gatewayFile, line: line(of: "url: ldap://x", in: f.gateway))
    }

    @Test("trustAnchors are for tenants; a credential takes failureMode and keyUsage only")
    func credentialKeys() throws {
        var f = try folder()
        f.tenants["acme.yaml"] = ConfigFolder.validAcme.replacingOccurrences(
            of: "    upstreamCredentialID: b/ec-signer", with: "    upstreamCredentialID: b/ec-signer\n    ocsp: {trustAnchors: [x.pem]}")
        try f.expectIssue("unknown key 'credentials[1].ocsp.trustAnchors'", file: f.tenantFile("acme.yaml"), line: nil)
    }
}
