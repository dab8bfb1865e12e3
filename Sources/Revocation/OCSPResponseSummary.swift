import Foundation
import SwiftASN1
import X509

/// The facts of an OCSP response that swift-certificates verifies but does not expose:
/// thisUpdate, nextUpdate, the responder's name, the status per serial. Read with SwiftASN1's
/// DER parser (RFC 6960 §4.2.1); it never decides trust, `OCSPVerifierPolicy` does.
public struct OCSPResponseSummary: Sendable, Equatable {
    public enum CertStatus: Sendable, Equatable {
        case good
        case revoked(at: Date, reason: String?)
        case unknown
    }

    public struct Single: Sendable, Equatable {
        /// Big-endian, leading zero bytes removed.
        public var serial: [UInt8]
        public var status: CertStatus
        public var thisUpdate: Date
        public var nextUpdate: Date?
    }

    /// 0 successful; 1 malformedRequest, 2 internalError, 3 tryLater, 5 sigRequired, 6 unauthorized.
    public var responseStatus: Int
    public var responder: String = ""
    public var producedAt: Date?
    public var responses: [Single] = []
    /// Subjects of the certificates the response carries (a delegated responder's, usually).
    public var certificateSubjects: [String] = []
    public var hasNonce = false

    public init(derEncoded bytes: [UInt8]) throws {
        let root = try DER.parse(bytes)
        let top = try Self.children(root)
        guard let statusNode = top.first else { throw Self.malformed("empty OCSPResponse") }
        responseStatus = Self.integer(try Self.bytes(statusNode))
        guard responseStatus == 0 else { return }
        guard top.count > 1, let responseBytes = try Self.children(top[1]).first else {
            throw Self.malformed("successful response without responseBytes")
        }
        let typed = try Self.children(responseBytes)
        guard typed.count == 2 else { throw Self.malformed("responseBytes") }
        let basic = try Self.children(try DER.parse(Array(try Self.bytes(typed[1]))))
        guard basic.count >= 3 else { throw Self.malformed("BasicOCSPResponse") }
        var data = try Self.children(basic[0])[...]
        if let first = data.first, first.identifier == ASN1Identifier(tagWithNumber: 0, tagClass: .contextSpecific) {
            data = data.dropFirst()  // version, v1 by default
        }
        guard let responderID = data.popFirst(), let produced = data.popFirst(), let list = data.popFirst() else {
            throw Self.malformed("ResponseData")
        }
        responder = try Self.describeResponder(responderID)
        producedAt = try Self.time(produced)
        responses = try Self.children(list).map(Self.single)
        if let extensions = data.popFirst(), let seq = try Self.children(extensions).first {
            for ext in try Self.children(seq) {
                if let oid = try Self.children(ext).first, (try? ASN1ObjectIdentifier(derEncoded: oid)) == Self.nonceOID {
                    hasNonce = true
                }
            }
        }
        if basic.count > 3, let certs = try Self.children(basic[3]).first {
            certificateSubjects = try Self.children(certs).map { try Certificate(derEncoded: $0).subject.description }
        }
    }

    /// The single response about `serial` (as the certificate carries it), if any.
    public func response(forSerial serial: ArraySlice<UInt8>) -> Single? {
        let wanted = Array(serial.drop { $0 == 0 })
        return responses.first { $0.serial == wanted }
    }

    static let nonceOID: ASN1ObjectIdentifier = [1, 3, 6, 1, 5, 5, 7, 48, 1, 2]
    static let reasons = ["unspecified", "keyCompromise", "cACompromise", "affiliationChanged", "superseded",
                          "cessationOfOperation", "certificateHold", "7", "removeFromCRL", "privilegeWithdrawn", "aACompromise"]

    private static func single(_ node: ASN1Node) throws -> Single {
        var parts = try children(node)[...]
        guard let certID = parts.popFirst(), let status = parts.popFirst(), let this = parts.popFirst() else {
            throw malformed("SingleResponse")
        }
        let idParts = try children(certID)
        guard idParts.count == 4 else { throw malformed("CertID") }
        let serial = Array(try bytes(idParts[3]).drop { $0 == 0 })
        let certStatus: CertStatus
        switch status.identifier.tagNumber {
        case 0: certStatus = .good
        case 1:
            let info = try children(status)
            guard let when = info.first else { throw malformed("RevokedInfo") }
            var reason: String?
            if info.count > 1, let r = try children(info[1]).first {
                let code = integer(try bytes(r))
                reason = code < reasons.count ? reasons[code] : String(code)
            }
            certStatus = .revoked(at: try time(when), reason: reason)
        default: certStatus = .unknown
        }
        var next: Date?
        if let n = parts.first, n.identifier == ASN1Identifier(tagWithNumber: 0, tagClass: .contextSpecific),
           let inner = try children(n).first {
            next = try time(inner)
        }
        return Single(serial: serial, status: certStatus, thisUpdate: try time(this), nextUpdate: next)
    }

    private static func describeResponder(_ node: ASN1Node) throws -> String {
        guard let inner = try children(node).first else { throw malformed("ResponderID") }
        if node.identifier.tagNumber == 1 { return try DistinguishedName(derEncoded: inner).description }
        return "key hash " + (try bytes(inner)).map { String($0, radix: 16).leftPadded(2) }.joined()
    }

    private static func time(_ node: ASN1Node) throws -> Date {
        let t = try GeneralizedTime(derEncoded: node)
        var c = DateComponents()
        c.year = t.year; c.month = t.month; c.day = t.day; c.hour = t.hours; c.minute = t.minutes; c.second = t.seconds
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC") ?? calendar.timeZone
        guard let date = calendar.date(from: c) else { throw malformed("GeneralizedTime") }
        return date.addingTimeInterval(t.fractionalSeconds)
    }

    private static func children(_ node: ASN1Node) throws -> [ASN1Node] {
        guard case .constructed(let nodes) = node.content else { throw malformed("expected a constructed value") }
        return Array(nodes)
    }

    private static func bytes(_ node: ASN1Node) throws -> ArraySlice<UInt8> {
        guard case .primitive(let b) = node.content else { throw malformed("expected a primitive value") }
        return b
    }

    /// Small non-negative INTEGER/ENUMERATED values only (status codes, reasons).
    private static func integer(_ b: ArraySlice<UInt8>) -> Int {
        b.suffix(4).reduce(0) { $0 << 8 | Int($1) }
    }

    private static func malformed(_ what: String) -> OCSPResponseError { OCSPResponseError("malformed OCSP response: \(what)") }
}

public struct OCSPResponseError: Error, Sendable, CustomStringConvertible {
    public let description: String
    init(_ d: String) { description = d }
}

extension String {
    func leftPadded(_ width: Int) -> String { count >= width ? self : String(repeating: "0", count: width - count) + self }
}
