import Foundation
import GatewayCore
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The durable half of the embedded ledger: usage events appended to segment files, one write
/// and one flush per batch. A SQLite commit costs several page writes and a flush each; on a
/// virtual disk where every flush also costs the host's CPU, that was most of what the ledger
/// cost a signHash. Events reach the SQLite file afterwards, in large transactions
/// (`SQLiteLedger`), which record how far they got.
///
/// Segments are zero-filled when made, so a flush writes data only (no block allocation, no
/// size change), and whatever follows the last record is zeros. Each batch starts on a 4 KiB
/// boundary, so a torn write of one batch cannot damage the one before it.
///
/// One process writes a journal: it holds an exclusive lock on `lock` while open.
final class UsageJournal: @unchecked Sendable {
    static let blockSize = 4096
    static let headerMagic = Array("cscgate-journal\n".utf8)
    static let formatVersion: UInt32 = 1

    struct Entry: Sendable {
        var seq: UInt64
        var event: UsageEvent
        /// A reservation (`JournalRecord.Kind.reservation`), not yet an outcome.
        var reserved = false
        /// The reservation this event ends without signatures, by its key.
        var releases: String?
    }

    /// What names a reservation: its event's id (the request's) and its time to the bit, so
    /// two attempts of one request never share it.
    static func reservationKey(_ planned: UsageEvent) -> String {
        planned.id + "@" + String(planned.time.timeIntervalSince1970.bitPattern, radix: 16)
    }

    /// What the writer is handed: an event, a reservation of one, or the event that releases one.
    struct Item: Sendable {
        var event: UsageEvent
        var reserved = false
        var releases: String?
    }

    func append(_ events: [UsageEvent]) throws -> [Entry] {
        try append(events.map { Item(event: $0) })
    }

    /// What a directory held at open: the events of every whole batch, in order.
    struct Recovered {
        var entries: [Entry] = []
        /// The highest sequence number seen, events or not.
        var lastSeq: UInt64 = 0
    }

    let directory: String
    let segmentBytes: Int
    private let lockFD: Mutex<Int32>
    /// Swapped in tests, to fail a flush the way a dying disk does.
    let flush: @Sendable (Int32) -> Int32

    // The writer's state: only `append`, on the group commit's one thread, touches it.
    private var current: Segment?
    private var nextSeq: UInt64
    /// Sequence numbers of batches whose write failed, voided by the next write.
    private var voided: ClosedRange<UInt64>?
    private var buffer: [UInt8] = []

    /// Segments no longer written, deleted once every event in them is in the database.
    private let finished = Mutex<[Segment.Name]>([])
    /// A zero-filled segment made ahead (off the request path), taken by the next roll.
    private let spare = Mutex<Segment.Name?>(nil)
    private let numbers: Atomic<Int>

    struct Segment {
        struct Name: Sendable {
            var number: Int
            var path: String
            /// The last sequence number written to it (0 while unused).
            var lastSeq: UInt64 = 0
            /// Closed whole by this process (full, of the usual size): its blocks can take the next
            /// segment's records. Never a segment found at open or left after a failed write,
            /// whose stale records could carry sequence numbers used again since.
            var recyclable = false
        }
        var name: Name
        var fd: Int32
        var offset: Int
        var capacity: Int
    }

    /// Opens (creating) the journal directory, takes its lock (waiting up to `lockWait` for a
    /// process that is letting go of it) and reads what it holds. Every existing segment is
    /// left for `release` once the caller has stored the recovered events.
    static func open(directory: String, segmentBytes: Int = 8 << 20, afterSeq applied: UInt64,
                     lockWait: Duration = .seconds(5), flush: (@Sendable (Int32) -> Int32)? = nil) throws -> UsageJournal {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let fd = Glibc.open(directory + "/lock", O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw JournalError.io("cannot open \(directory)/lock", errno) }
        let deadline = ContinuousClock.now + lockWait
        while flock(fd, LOCK_EX | LOCK_NB) != 0 {
            let code = errno
            guard code == EWOULDBLOCK || code == EINTR, ContinuousClock.now < deadline else {
                Glibc.close(fd)
                if code != EWOULDBLOCK && code != EINTR { throw JournalError.io("cannot lock \(directory)/lock", code) }
                throw JournalError.inUse(directory)
            }
            usleep(50_000)
        }
        do {
            let journal = try UsageJournal(directory: directory, lockFD: fd, segmentBytes: segmentBytes, afterSeq: applied,
                                           flush: flush ?? { fdatasync($0) })
            journal.prepareSpare()
            return journal
        } catch {
            Glibc.close(fd)
            throw error
        }
    }

    private init(directory: String, lockFD fd: Int32, segmentBytes: Int, afterSeq applied: UInt64,
                 flush: @escaping @Sendable (Int32) -> Int32) throws {
        self.directory = directory
        self.segmentBytes = max(Self.blockSize * 16, segmentBytes)
        self.flush = flush
        lockFD = Mutex(fd)
        let names = try Self.segmentNames(directory)
        numbers = Atomic((names.last?.number ?? 0) + 1)
        let scan = try Self.scan(names)
        recovered = scan.recovered
        recovered.entries.removeAll { $0.seq <= applied }
        nextSeq = max(scan.recovered.lastSeq, applied) + 1
        finished.withLock { $0 = scan.used }
        // Never reused: behind a block 0 of zeros may lie a first batch torn by a crash.
        for unused in scan.unused { unlink(unused.path) }
    }

    /// Events found at open whose sequence number is above the one the database has.
    private(set) var recovered: Recovered

    deinit {
        if let c = current { Glibc.close(c.fd) }
        lockFD.withLock { if $0 >= 0 { Glibc.close($0) } }
    }

    /// After the last write: closes the segment being written, deletes every segment whose
    /// events are all in the database (through `seq`), and lets go of the lock.
    func close(storedThrough seq: UInt64) {
        if let c = current {
            Glibc.close(c.fd)
            finished.withLock { $0.append(c.name) }
            current = nil
        }
        release(through: seq, recycling: false)
        if let s = spare.withLock({ s -> Segment.Name? in defer { s = nil }; return s }) { unlink(s.path) }
        lockFD.withLock { fd in
            if fd >= 0 { Glibc.close(fd) }
            fd = -1
        }
    }

    /// Writes `events` as one batch and returns once the batch is on disk, with their sequence
    /// numbers. A failure leaves nothing of the batch counted: its sequence numbers are voided
    /// by the next batch, which starts a new segment.
    func append(_ events: [Item]) throws -> [Entry] {
        let first = nextSeq
        var seq = first
        buffer.removeAll(keepingCapacity: true)
        if let v = voided {
            JournalRecord.append(kind: .void, seq: seq, endsBatch: events.isEmpty, payload: JournalRecord.encodeVoid(v),
                                 to: &buffer)
            seq += 1
        }
        var entries = [Entry]()
        entries.reserveCapacity(events.count)
        for (i, e) in events.enumerated() {
            if let r = e.releases {
                JournalRecord.append(kind: .release, seq: seq, endsBatch: false, payload: JournalRecord.encodeKey(r), to: &buffer)
                seq += 1
            }
            JournalRecord.append(kind: e.reserved ? .reservation : .event, seq: seq, endsBatch: i == events.count - 1,
                                 payload: JournalRecord.encode(e.event), to: &buffer)
            entries.append(Entry(seq: seq, event: e.event, reserved: e.reserved, releases: e.releases))
            seq += 1
        }
        let last = seq - 1
        nextSeq = seq
        buffer.append(contentsOf: repeatElement(0, count: Self.padding(buffer.count)))
        do {
            try write(buffer, firstSeq: first, lastSeq: last)
        } catch {
            // The next batch voids these (and any still voided), in a new segment.
            voided = (voided?.lowerBound ?? first)...last
            if let c = current {
                Glibc.close(c.fd)
                finished.withLock { $0.append(c.name) }
                current = nil
            }
            throw error
        }
        voided = nil
        return entries
    }

    private func write(_ batch: [UInt8], firstSeq: UInt64, lastSeq: UInt64) throws {
        var header: [UInt8] = []
        if current == nil || current.map({ $0.offset + batch.count > $0.capacity }) == true {
            try roll(needing: batch.count)
            header = segmentHeader(firstSeq: firstSeq)
        }
        guard var segment = current else { throw JournalError.io("no segment to write", EIO) }
        let start = header.isEmpty ? segment.offset : 0
        let bytes = header.isEmpty ? batch : header + batch
        try bytes.withUnsafeBytes { raw in
            var done = 0
            while done < raw.count {
                let n = pwrite(segment.fd, raw.baseAddress! + done, raw.count - done, off_t(start + done))
                if n < 0 {
                    if errno == EINTR { continue }
                    throw JournalError.io("cannot write \(segment.name.path)", errno)
                }
                done += n
            }
        }
        guard flush(segment.fd) == 0 else { throw JournalError.io("cannot flush \(segment.name.path)", errno) }
        segment.offset = start + bytes.count
        segment.name.lastSeq = lastSeq
        current = segment
    }

    /// Closes the current segment and opens the spare, or a new one when none is ready (or the
    /// batch is bigger than a segment).
    private func roll(needing bytes: Int) throws {
        if var c = current {
            Glibc.close(c.fd)
            c.name.recyclable = c.capacity == segmentBytes
            finished.withLock { $0.append(c.name) }
            current = nil
        }
        let capacity = max(segmentBytes, Self.blockSize + bytes + Self.padding(bytes))
        var name = capacity == segmentBytes ? spare.withLock { s -> Segment.Name? in defer { s = nil }; return s } : nil
        if name == nil { name = try makeSegment(capacity: capacity) }
        guard let name else { throw JournalError.io("no segment", EIO) }
        let fd = Glibc.open(name.path, O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { throw JournalError.io("cannot open \(name.path)", errno) }
        current = Segment(name: name, fd: fd, offset: 0, capacity: capacity)
    }

    /// Makes the spare segment if there is none: called off the request path (the apply thread).
    func prepareSpare() {
        guard spare.withLock({ $0 == nil }) else { return }
        if let made = try? makeSegment(capacity: segmentBytes) { spare.withLock { $0 = made } }
    }

    /// A zero-filled file of `capacity` bytes, flushed, its directory entry flushed.
    private func makeSegment(capacity: Int) throws -> Segment.Name {
        let number = numbers.wrappingAdd(1, ordering: .relaxed).oldValue
        let path = directory + "/" + Self.fileName(number)
        let fd = Glibc.open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw JournalError.io("cannot create \(path)", errno) }
        defer { Glibc.close(fd) }
        let zeros = [UInt8](repeating: 0, count: 1 << 20)
        var written = 0
        while written < capacity {
            let n = zeros.withUnsafeBytes { pwrite(fd, $0.baseAddress, min($0.count, capacity - written), off_t(written)) }
            if n < 0 {
                if errno == EINTR { continue }
                unlink(path)
                throw JournalError.io("cannot fill \(path)", errno)
            }
            written += n
        }
        guard fsync(fd) == 0 else {
            unlink(path)
            throw JournalError.io("cannot flush \(path)", errno)
        }
        try syncDirectory()
        return Segment.Name(number: number, path: path)
    }

    private func syncDirectory() throws {
        let dfd = Glibc.open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard dfd >= 0 else { throw JournalError.io("cannot open \(directory)", errno) }
        defer { Glibc.close(dfd) }
        guard fsync(dfd) == 0 else { throw JournalError.io("cannot flush \(directory)", errno) }
    }

    /// Lets go of the segments no longer written whose every event is at or below `seq` (stored
    /// in the database, durably): one becomes the next spare under a new number, as PostgreSQL
    /// recycles its WAL (its blocks are written already, so no zero fill competes with the
    /// journal's flushes); the others are deleted. What a recycled segment still holds is older
    /// than anything written after it, so a reader stops at it: every record must carry the next
    /// sequence number.
    func release(through seq: UInt64, recycling: Bool = true) {
        let gone = finished.withLock { names -> [Segment.Name] in
            let done = names.filter { $0.lastSeq <= seq }
            names.removeAll { $0.lastSeq <= seq }
            return done
        }
        for name in gone {
            if recycling, name.recyclable, spare.withLock({ $0 == nil }) {
                let number = numbers.wrappingAdd(1, ordering: .relaxed).oldValue
                let path = directory + "/" + Self.fileName(number)
                if rename(name.path, path) == 0 {
                    spare.withLock { $0 = Segment.Name(number: number, path: path) }
                    continue
                }
            }
            unlink(name.path)
        }
    }

    /// Segment files on disk (for tests and the operator's view).
    var segmentCount: Int { (try? Self.segmentNames(directory).count) ?? 0 }

    // MARK: Layout

    static func padding(_ count: Int) -> Int { (blockSize - count % blockSize) % blockSize }

    static func fileName(_ number: Int) -> String {
        let digits = String(number)
        return String(repeating: "0", count: max(0, 12 - digits.count)) + digits + ".seg"
    }

    /// Block 0 of a segment: magic, format version, first sequence number, checksum.
    private func segmentHeader(firstSeq: UInt64) -> [UInt8] {
        var h = Self.headerMagic
        h.appendLE(Self.formatVersion)
        h.appendLE(firstSeq)
        var crc = CRC32C()
        h.withUnsafeBytes { crc.update($0) }
        h.appendLE(crc.value)
        h.append(contentsOf: repeatElement(0, count: Self.blockSize - h.count))
        return h
    }

    /// The first sequence number of a used segment; nil for an unused (zero) block 0; throws
    /// for anything else.
    static func readHeader(_ raw: UnsafeRawBufferPointer, path: String) throws -> UInt64? {
        guard raw.count >= blockSize else { throw JournalError.corrupt(path, "shorter than its header") }
        if raw[0..<32].allSatisfy({ $0 == 0 }) { return nil }
        guard Array(raw[0..<16]) == headerMagic else { throw JournalError.corrupt(path, "not a cscgate journal segment") }
        guard raw.loadLE(UInt32.self, at: 16) == formatVersion else {
            throw JournalError.corrupt(path, "journal format \(raw.loadLE(UInt32.self, at: 16)) (this cscgate reads \(formatVersion))")
        }
        var crc = CRC32C()
        crc.update(UnsafeRawBufferPointer(rebasing: raw[0..<28]))
        guard crc.value == raw.loadLE(UInt32.self, at: 28) else { throw JournalError.corrupt(path, "header checksum") }
        return raw.loadLE(UInt64.self, at: 20)
    }

    static func segmentNames(_ directory: String) throws -> [Segment.Name] {
        try FileManager.default.contentsOfDirectory(atPath: directory).compactMap { file -> Segment.Name? in
            guard file.hasSuffix(".seg"), let n = Int(file.dropLast(4)) else { return nil }
            return Segment.Name(number: n, path: directory + "/" + file)
        }.sorted { $0.number < $1.number }
    }

    struct Scan {
        var recovered = Recovered()
        var used: [Segment.Name] = []
        /// Spares (new or recycled), and a last segment whose first batch never completed.
        var unused: [Segment.Name] = []
    }

    /// Reads every segment in order. Within a segment, reading stops at the first record that
    /// is not whole (zeros, a torn write); a batch without its last record is dropped. A later
    /// segment exists only after a roll, so reading goes on there. Void records drop the
    /// events they name.
    static func scan(_ names: [Segment.Name]) throws -> Scan {
        var result = Scan()
        var voids: [ClosedRange<UInt64>] = []
        for var name in names {
            let data: Data
            do { data = try Data(contentsOf: URL(fileURLWithPath: name.path)) } catch {
                throw JournalError.io("cannot read \(name.path)", EIO)
            }
            let isLast = name.number == names.last?.number
            try data.withUnsafeBytes { raw in
                let header: UInt64?
                do { header = try readHeader(raw, path: name.path) } catch where isLast && raw.count >= blockSize {
                    // A crash while the first batch of a new segment was being written.
                    header = nil
                }
                guard let firstSeq = header else {
                    result.unused.append(name)
                    return
                }
                guard firstSeq > result.recovered.lastSeq else {
                    // A recycled spare never written again: its header is its former use's.
                    result.unused.append(name)
                    return
                }
                var offset = blockSize
                var expected = firstSeq
                var batch: [Entry] = [], batchVoids: [ClosedRange<UInt64>] = []
                var releasing: String?
                while let (header, payload) = JournalRecord.read(raw, at: offset), header.seq == expected {
                    switch JournalRecord.Kind(rawValue: header.kind) {
                    case .event, .reservation:
                        guard let event = JournalRecord.decodeEvent(payload) else {
                            throw JournalError.corrupt(name.path, "record \(header.seq) has a checksum but cannot be read")
                        }
                        batch.append(Entry(seq: header.seq, event: event, reserved: header.kind == JournalRecord.Kind.reservation.rawValue,
                                           releases: releasing))
                        releasing = nil
                    case .release:
                        guard let key = JournalRecord.decodeKey(payload) else {
                            throw JournalError.corrupt(name.path, "release record \(header.seq) cannot be read")
                        }
                        releasing = key
                    case .void:
                        guard let range = JournalRecord.decodeVoid(payload) else {
                            throw JournalError.corrupt(name.path, "void record \(header.seq) cannot be read")
                        }
                        batchVoids.append(range)
                    case nil:
                        throw JournalError.corrupt(name.path, "record \(header.seq) is of unknown kind \(header.kind)")
                    }
                    expected += 1
                    offset += JournalRecord.headerSize + header.length
                    if header.endsBatch {
                        result.recovered.entries += batch
                        voids += batchVoids
                        result.recovered.lastSeq = header.seq
                        name.lastSeq = header.seq
                        batch = []
                        batchVoids = []
                        offset += padding(offset)
                    }
                }
                result.used.append(name)
            }
        }
        if !voids.isEmpty {
            result.recovered.entries.removeAll { e in voids.contains { $0.contains(e.seq) } }
        }
        return result
    }
}

enum JournalError: Error, CustomStringConvertible {
    case inUse(String)
    case io(String, Int32)
    case corrupt(String, String)

    var description: String {
        switch self {
        case .inUse(let dir):
            "the usage journal \(dir) is in use by another cscgate process (one process writes a SQLite ledger; share a PostgreSQL ledger between instances)"
        case .io(let what, let code): "\(what): \(String(cString: strerror(code)))"
        case .corrupt(let path, let what): "usage journal segment \(path) is damaged: \(what)"
        }
    }
}
