import CSC
import Foundation

/// What policy rules can see of one operation. The pipeline fills in what it knows at the
/// policy stage; a fact an operation does not have (no `signAlgo` on `credentials/list`) is nil,
/// and a condition on a missing fact does not match.
public struct OperationFacts: Sendable {
    public var tenant: String
    public var client: String
    /// As the ledger names it, e.g. `signatures/signHash`.
    public var operation: String
    public var credential: String?
    public var credentialLabels: [String: String]
    public var upstream: String?
    public var signAlgorithm: String?
    public var hashAlgorithm: String?
    /// Hashes in the request (signHash, authorize with hashes).
    public var hashes: Int?
    /// `numSignatures` of an authorize, or the SAD's budget on signHash.
    public var numSignatures: Int?
    /// "1" or "2".
    public var scal: String?
    public var signatureQualifier: String?
    public var time: Date
    public var source: IPAddress?
    public var certificate: CertificateFacts?

    public init(tenant: String, client: String, operation: String, credential: String? = nil,
                credentialLabels: [String: String] = [:], upstream: String? = nil, signAlgorithm: String? = nil,
                hashAlgorithm: String? = nil, hashes: Int? = nil, numSignatures: Int? = nil, scal: String? = nil,
                signatureQualifier: String? = nil, time: Date = Date(), source: IPAddress? = nil,
                certificate: CertificateFacts? = nil) {
        self.tenant = tenant; self.client = client; self.operation = operation; self.credential = credential
        self.credentialLabels = credentialLabels; self.upstream = upstream; self.signAlgorithm = signAlgorithm
        self.hashAlgorithm = hashAlgorithm; self.hashes = hashes; self.numSignatures = numSignatures; self.scal = scal
        self.signatureQualifier = signatureQualifier; self.time = time; self.source = source; self.certificate = certificate
    }
}

/// An IPv4 or IPv6 address as 16 bytes (IPv4 mapped into `::ffff:0:0/96`), so one CIDR
/// matcher serves both families.
public struct IPAddress: Sendable, Equatable, CustomStringConvertible {
    public let bytes: [UInt8]
    public let description: String

    public init?(_ text: String) {
        var s = Substring(text)
        if s.hasPrefix("[") && s.hasSuffix("]") { s = s.dropFirst().dropLast() }
        if let percent = s.firstIndex(of: "%") { s = s[..<percent] }
        if let v4 = Self.parseIPv4(s) {
            bytes = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff] + v4
        } else if let v6 = Self.parseIPv6(s) {
            bytes = v6
        } else {
            return nil
        }
        description = String(s)
    }

    var isIPv4Mapped: Bool { bytes.prefix(12).elementsEqual([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]) }

    static func parseIPv4(_ s: Substring) -> [UInt8]? {
        let parts = s.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var out = [UInt8]()
        for p in parts {
            guard !p.isEmpty, p.count <= 3, p.allSatisfy(\.isASCII), let v = UInt8(p) else { return nil }
            out.append(v)
        }
        return out
    }

    static func parseIPv6(_ s: Substring) -> [UInt8]? {
        guard s.contains(":"), s.count <= 45 else { return nil }
        let halves = s.components(separatedBy: "::")
        guard halves.count <= 2 else { return nil }
        func groups(_ part: String) -> [UInt8]? {
            if part.isEmpty { return [] }
            var out = [UInt8]()
            let pieces = part.split(separator: ":", omittingEmptySubsequences: false)
            for (i, piece) in pieces.enumerated() {
                if i == pieces.count - 1, piece.contains("."), let v4 = parseIPv4(piece) {
                    out += v4
                    continue
                }
                guard (1...4).contains(piece.count), let v = UInt16(piece, radix: 16) else { return nil }
                out += [UInt8(v >> 8), UInt8(v & 0xff)]
            }
            return out
        }
        guard let head = groups(halves[0]) else { return nil }
        if halves.count == 1 { return head.count == 16 ? head : nil }
        guard let tail = groups(halves[1]), head.count + tail.count <= 14 else { return nil }
        return head + [UInt8](repeating: 0, count: 16 - head.count - tail.count) + tail
    }
}

/// `10.0.0.0/8`, `2001:db8::/32`, or a single address.
public struct CIDR: Sendable, Equatable, CustomStringConvertible {
    let network: [UInt8]
    let prefix: Int
    public let description: String

    public init?(_ text: String) {
        let parts = text.split(separator: "/", maxSplits: 1)
        guard let first = parts.first, let address = IPAddress(String(first)) else { return nil }
        let maxBits = address.isIPv4Mapped && !first.contains(":") ? 32 : 128
        var bits = maxBits
        if parts.count == 2 {
            guard let b = Int(parts[1]), (0...maxBits).contains(b) else { return nil }
            bits = b
        }
        prefix = maxBits == 32 ? 96 + bits : bits
        var net = address.bytes
        for i in 0..<16 {
            let keep = max(0, min(8, prefix - i * 8))
            net[i] &= keep == 8 ? 0xff : UInt8(truncatingIfNeeded: 0xff << (8 - keep))
        }
        network = net
        description = text
    }

    public func contains(_ address: IPAddress) -> Bool {
        var bitsLeft = prefix
        for i in 0..<16 where bitsLeft > 0 {
            let mask: UInt8 = bitsLeft >= 8 ? 0xff : UInt8(truncatingIfNeeded: 0xff << (8 - bitsLeft))
            if address.bytes[i] & mask != network[i] { return false }
            bitsLeft -= 8
        }
        return true
    }
}

/// Days and hours in a time zone, e.g. weekdays 08:00–18:00 Europe/Berlin. A window whose end
/// is before its start runs over midnight; `days` are the days the moment itself falls on.
public struct TimeWindow: Sendable, CustomStringConvertible {
    /// 0 = Sunday … 6 = Saturday.
    public let days: Set<Int>
    /// Minutes after local midnight; `to` is exclusive.
    public let from: Int
    public let to: Int
    public let zone: TimeZone

    static let dayNames = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]

    public init(days: Set<Int>, from: Int, to: Int, zone: TimeZone) {
        self.days = days; self.from = from; self.to = to; self.zone = zone
    }

    /// Local weekday and minute of the day of `date` in this window's zone.
    func local(_ date: Date) -> (day: Int, minute: Int) {
        let seconds = Int(date.timeIntervalSince1970.rounded(.down)) + zone.secondsFromGMT(for: date)
        let dayNumber = Int((Double(seconds) / 86400).rounded(.down))
        let day = ((dayNumber + 4) % 7 + 7) % 7  // 1970-01-01 was a Thursday
        let minute = (seconds - dayNumber * 86400) / 60
        return (day, minute)
    }

    public func contains(_ date: Date) -> Bool {
        let (day, minute) = local(date)
        guard days.contains(day) else { return false }
        if from == to { return true }
        return from < to ? (minute >= from && minute < to) : (minute >= from || minute < to)
    }

    public var description: String {
        let d = days.count == 7 ? "every day" : days.sorted().map { Self.dayNames[$0] }.joined(separator: ",")
        return "\(d) \(Self.clock(from))–\(Self.clock(to)) \(zone.identifier)"
    }

    static func clock(_ m: Int) -> String {
        let h = m / 60, mm = m % 60
        return (h < 10 ? "0" : "") + "\(h):" + (mm < 10 ? "0" : "") + "\(mm)"
    }
}

/// Shell-style pattern over credential ids: `*` any run, `?` one character.
public struct Glob: Sendable, Equatable, CustomStringConvertible {
    let pattern: [UInt8]
    public var description: String { String(decoding: pattern, as: UTF8.self) }

    public init(_ pattern: String) { self.pattern = Array(pattern.utf8) }

    public func matches(_ text: String) -> Bool {
        var t = 0, p = 0, star = -1, mark = 0
        let s = Array(text.utf8)
        while t < s.count {
            if p < pattern.count && (pattern[p] == UInt8(ascii: "?") || pattern[p] == s[t]) {
                t += 1; p += 1
            } else if p < pattern.count && pattern[p] == UInt8(ascii: "*") {
                star = p; mark = t; p += 1
            } else if star >= 0 {
                p = star + 1; mark += 1; t = mark
            } else {
                return false
            }
        }
        while p < pattern.count && pattern[p] == UInt8(ascii: "*") { p += 1 }
        return p == pattern.count
    }
}
