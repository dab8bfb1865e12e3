import Foundation
import GatewayCore

/// One record of the usage journal, as written to disk (little-endian):
///
///     0  u32  magic "CGJ1"
///     4  u32  payload length
///     8  u64  sequence number (one per record, increasing, never reused)
///     16 u8   kind (event, void, reservation, release)
///     17 u8   flags (bit 0: the last record of its batch)
///     18 u16  zero
///     20 u32  CRC-32C of bytes 0..<20 and the payload
///     24      payload
///
/// A batch is acknowledged whole or not at all, so recovery keeps a batch only once it has
/// read its last record: a batch torn by a crash is dropped entire, as a SQLite transaction
/// would be.
enum JournalRecord {
    static let magic: UInt32 = 0x314A_4743  // "CGJ1" read little-endian
    static let headerSize = 24
    /// Far above any event (an answer holds at most the signatures of one request).
    static let maxPayload = 64 << 20

    enum Kind: UInt8 {
        /// A usage event.
        case event = 1
        /// Sequence numbers of a batch whose write failed: its callers were told so, and the
        /// records must not count even if some reached the disk.
        case void = 2
        /// A signing's ok event, made durable while the signing runs. Its outcome replaces it:
        /// the ok event in memory, or a later refusal or failure of the same request. One
        /// still open at recovery is stored as signed (see `JournalBacklog.settle`).
        case reservation = 3
        /// The key of a reservation whose signing ended without signatures (`UsageJournal.
        /// reservationKey`); the event record after it, in the same batch, is that ending.
        case release = 4
    }

    struct Header {
        var length: Int
        var seq: UInt64
        var kind: UInt8
        var endsBatch: Bool
    }

    /// Appends one record to `out`.
    static func append(kind: Kind, seq: UInt64, endsBatch: Bool, payload: [UInt8], to out: inout [UInt8]) {
        let start = out.count
        out.appendLE(magic)
        out.appendLE(UInt32(payload.count))
        out.appendLE(seq)
        out.append(kind.rawValue)
        out.append(endsBatch ? 1 : 0)
        out.append(0)
        out.append(0)
        var crc = CRC32C()
        out.withUnsafeBytes { crc.update(UnsafeRawBufferPointer(rebasing: $0[start..<(start + 20)])) }
        payload.withUnsafeBytes { crc.update($0) }
        out.appendLE(crc.value)
        out.append(contentsOf: payload)
    }

    /// The header at `offset` if it is whole, names a payload that fits in `bytes`, and the
    /// checksum holds; nil for zeros, garbage or a record cut short.
    static func read(_ bytes: UnsafeRawBufferPointer, at offset: Int) -> (Header, UnsafeRawBufferPointer)? {
        guard offset + headerSize <= bytes.count, bytes.loadLE(UInt32.self, at: offset) == magic else { return nil }
        let length = Int(bytes.loadLE(UInt32.self, at: offset + 4))
        guard length <= maxPayload, offset + headerSize + length <= bytes.count,
              bytes[offset + 18] == 0, bytes[offset + 19] == 0 else { return nil }
        let payload = UnsafeRawBufferPointer(rebasing: bytes[(offset + headerSize)..<(offset + headerSize + length)])
        var crc = CRC32C()
        crc.update(UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + 20)]))
        crc.update(payload)
        guard crc.value == bytes.loadLE(UInt32.self, at: offset + 20) else { return nil }
        let header = Header(length: length, seq: bytes.loadLE(UInt64.self, at: offset + 8), kind: bytes[offset + 16],
                            endsBatch: bytes[offset + 17] & 1 == 1)
        return (header, payload)
    }

    // MARK: Payloads

    /// Version 1 of the event payload: every field of `UsageEvent`, the time exactly (its bits).
    static func encode(_ e: UsageEvent) -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(256 + (e.answer?.count ?? 0) + (e.reason?.utf8.count ?? 0))
        out.append(1)
        out.appendString(e.id)
        out.appendLE(e.time.timeIntervalSince1970.bitPattern)
        out.appendString(e.tenantID)
        out.appendString(e.clientID)
        out.appendString(e.credentialID)
        out.appendString(e.upstream)
        out.appendString(e.operation)
        out.appendLE(UInt64(bitPattern: Int64(e.signatures)))
        out.appendString(e.signAlgorithm)
        out.appendString(e.hashAlgorithm)
        out.append(outcomeCode(e.outcome))
        out.appendString(e.stage)
        out.appendString(e.reason)
        out.appendLE(UInt64(bitPattern: Int64(e.latencyMicros)))
        out.appendString(e.requestID)
        out.appendString(e.evidence)
        if let answer = e.answer { out.appendBytes(answer) } else { out.appendLE(UInt32.max) }
        out.append(e.requestIDFromClient ? 1 : 0)
        return out
    }

    static func decodeEvent(_ payload: UnsafeRawBufferPointer) -> UsageEvent? {
        var r = PayloadReader(bytes: payload)
        guard r.byte() == 1,
              let id = r.string(), let timeBits = r.u64(), let tenant = r.string(), let client = r.string(),
              case .some(let credential) = r.optionalString(), case .some(let upstream) = r.optionalString(),
              let operation = r.string(), let signatures = r.u64(),
              case .some(let signAlgorithm) = r.optionalString(), case .some(let hashAlgorithm) = r.optionalString(),
              let outcomeByte = r.byte(), let outcome = outcome(outcomeByte),
              case .some(let stage) = r.optionalString(), case .some(let reason) = r.optionalString(),
              let latency = r.u64(), let requestID = r.string(), case .some(let evidence) = r.optionalString(),
              case .some(let answer) = r.optionalBytes(), let fromClient = r.byte(), r.atEnd
        else { return nil }
        return UsageEvent(
            id: id, time: Date(timeIntervalSince1970: Double(bitPattern: timeBits)), tenantID: tenant, clientID: client,
            credentialID: credential, upstream: upstream, operation: operation, signatures: Int(Int64(bitPattern: signatures)),
            signAlgorithm: signAlgorithm, hashAlgorithm: hashAlgorithm, outcome: outcome, stage: stage, reason: reason,
            latencyMicros: Int(Int64(bitPattern: latency)), requestID: requestID, evidence: evidence, answer: answer,
            requestIDFromClient: fromClient == 1)
    }

    static func encodeVoid(_ seqs: ClosedRange<UInt64>) -> [UInt8] {
        var out = [UInt8]()
        out.appendLE(seqs.lowerBound)
        out.appendLE(seqs.upperBound)
        return out
    }

    static func decodeVoid(_ payload: UnsafeRawBufferPointer) -> ClosedRange<UInt64>? {
        guard payload.count == 16 else { return nil }
        let from = payload.loadLE(UInt64.self, at: 0), through = payload.loadLE(UInt64.self, at: 8)
        return from <= through ? from...through : nil
    }

    static func encodeKey(_ key: String) -> [UInt8] { Array(key.utf8) }

    static func decodeKey(_ payload: UnsafeRawBufferPointer) -> String? {
        payload.isEmpty ? nil : String(decoding: payload, as: UTF8.self)
    }

    private static func outcomeCode(_ o: UsageOutcome) -> UInt8 {
        switch o {
        case .ok: 0
        case .denied: 1
        case .failed: 2
        }
    }

    private static func outcome(_ code: UInt8) -> UsageOutcome? {
        switch code {
        case 0: .ok
        case 1: .denied
        case 2: .failed
        default: nil
        }
    }
}

/// Reads a payload front to back; nil once anything is out of bounds.
struct PayloadReader {
    let bytes: UnsafeRawBufferPointer
    var offset = 0

    var atEnd: Bool { offset == bytes.count }

    mutating func byte() -> UInt8? {
        guard offset < bytes.count else { return nil }
        defer { offset += 1 }
        return bytes[offset]
    }

    mutating func u64() -> UInt64? {
        guard offset + 8 <= bytes.count else { return nil }
        defer { offset += 8 }
        return bytes.loadLE(UInt64.self, at: offset)
    }

    /// nil: malformed; .some(nil): absent.
    mutating func optionalBytes() -> Data?? {
        guard offset + 4 <= bytes.count else { return nil }
        let length = bytes.loadLE(UInt32.self, at: offset)
        offset += 4
        if length == UInt32.max { return .some(nil) }
        guard offset + Int(length) <= bytes.count else { return nil }
        defer { offset += Int(length) }
        return .some(Data(bytes[offset..<(offset + Int(length))]))
    }

    mutating func optionalString() -> String?? {
        guard let data = optionalBytes() else { return nil }
        guard let data else { return .some(nil) }
        guard let s = String(data: data, encoding: .utf8) else { return nil }
        return .some(s)
    }

    mutating func string() -> String? {
        guard case .some(.some(let s)) = optionalString() else { return nil }
        return s
    }
}

extension [UInt8] {
    mutating func appendLE<T: FixedWidthInteger>(_ v: T) {
        Swift.withUnsafeBytes(of: v.littleEndian) { append(contentsOf: $0) }
    }

    mutating func appendBytes(_ d: Data) {
        appendLE(UInt32(d.count))
        append(contentsOf: d)
    }

    mutating func appendString(_ value: String?) {
        guard var s = value else { return appendLE(UInt32.max) }
        s.withUTF8 { utf8 in
            appendLE(UInt32(utf8.count))
            append(contentsOf: utf8)
        }
    }
}

extension UnsafeRawBufferPointer {
    func loadLE<T: FixedWidthInteger>(_ type: T.Type, at offset: Int) -> T {
        T(littleEndian: loadUnaligned(fromByteOffset: offset, as: T.self))
    }
}

/// CRC-32C (Castagnoli), as iSCSI and ext4 use it: catches torn and stale writes, not tampering
/// (the hash chain does that once the events are in the database).
struct CRC32C {
    private(set) var state: UInt32 = 0xFFFF_FFFF

    var value: UInt32 { ~state }

    mutating func update(_ bytes: UnsafeRawBufferPointer) {
        var c = state
        for b in bytes { c = Self.table[Int((c ^ UInt32(b)) & 0xFF)] ^ (c >> 8) }
        state = c
    }

    static let table: [UInt32] = (0..<256).map { i -> UInt32 in
        var c = UInt32(i)
        for _ in 0..<8 { c = c & 1 == 1 ? 0x82F6_3B78 ^ (c >> 1) : c >> 1 }
        return c
    }
}
