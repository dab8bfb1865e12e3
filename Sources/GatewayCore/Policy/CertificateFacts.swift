import Foundation
import Synchronization
import SwiftASN1
import X509

/// The signer certificate as policy rules see it: issuer and subject attributes, certificate
/// policy OIDs and QC statements (ETSI EN 319 412-5).
public struct CertificateFacts: Sendable, Equatable {
    /// Attribute short name (lower-cased: cn, o, ou, c…) or dotted OID → values.
    public var issuer: [String: [String]]
    public var subject: [String: [String]]
    public var policies: Set<String>
    /// Statement ids of the qcStatements extension; nil when the extension is absent.
    public var qcStatements: Set<String>?

    public init(issuer: [String: [String]] = [:], subject: [String: [String]] = [:], policies: Set<String> = [],
                qcStatements: Set<String>? = nil) {
        self.issuer = issuer; self.subject = subject; self.policies = policies; self.qcStatements = qcStatements
    }

    static let attributeNames: [String: String] = [
        "2.5.4.3": "cn", "2.5.4.10": "o", "2.5.4.11": "ou", "2.5.4.6": "c", "2.5.4.7": "l", "2.5.4.8": "st",
        "2.5.4.5": "serialnumber", "2.5.4.42": "givenname", "2.5.4.4": "surname", "2.5.4.97": "organizationidentifier",
        "1.2.840.113549.1.9.1": "emailaddress", "2.5.4.12": "title", "2.5.4.65": "pseudonym",
    ]
    static let aliases: [String: String] = ["gn": "givenname", "sn": "surname", "email": "emailaddress", "s": "st"]

    /// The key a rule's attribute name is compared under.
    public static func attributeKey(_ name: String) -> String {
        let lower = name.lowercased()
        return aliases[lower] ?? lower
    }

    static let certificatePoliciesOID: ASN1ObjectIdentifier = [2, 5, 29, 32]
    static let qcStatementsOID: ASN1ObjectIdentifier = [1, 3, 6, 1, 5, 5, 7, 1, 3]

    /// Reads a DER certificate; nil when it cannot be parsed (rules on it then do not match).
    public static func parse(der: [UInt8]) -> CertificateFacts? {
        guard let certificate = try? Certificate(derEncoded: der) else { return nil }
        var facts = CertificateFacts(issuer: attributes(certificate.issuer), subject: attributes(certificate.subject))
        if let ext = certificate.extensions[oid: certificatePoliciesOID] {
            facts.policies = Set(sequenceOfLeadingOIDs(ext.value))
        }
        if let ext = certificate.extensions[oid: qcStatementsOID] {
            facts.qcStatements = Set(sequenceOfLeadingOIDs(ext.value))
        }
        return facts
    }

    static func attributes(_ name: DistinguishedName) -> [String: [String]] {
        var out = [String: [String]]()
        for rdn in name {
            for attribute in rdn {
                let oid = attribute.type.description
                let key = attributeNames[oid] ?? oid
                out[key, default: []].append(String(attribute.value) ?? attribute.value.description)
            }
        }
        return out
    }

    /// certificatePolicies and qcStatements are both SEQUENCE OF SEQUENCE { OID, … }: the OIDs.
    static func sequenceOfLeadingOIDs(_ der: ArraySlice<UInt8>) -> [String] {
        guard let root = try? DER.parse(der), case .constructed(let items) = root.content else { return [] }
        var out = [String]()
        for item in items {
            guard case .constructed(let fields) = item.content, let first = fields.first(where: { _ in true }),
                  let oid = try? ASN1ObjectIdentifier(derEncoded: first) else { continue }
            out.append(oid.description)
        }
        return out
    }
}

/// Parsed certificates by their base64 text: the catalogue hands the same chain to every
/// request, so each certificate is parsed once.
final class CertificateFactsCache: Sendable {
    private let parsed = Mutex<[String: CertificateFacts?]>([:])

    func facts(base64 certificate: String) -> CertificateFacts? {
        if let hit = parsed.withLock({ $0[certificate] }) { return hit }
        let facts = Data(base64Encoded: certificate).flatMap { CertificateFacts.parse(der: Array($0)) }
        parsed.withLock {
            if $0.count > 50_000 { $0.removeAll() }
            $0[certificate] = facts
        }
        return facts
    }
}
