import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import Synchronization

/// Scheme, host and port of an upstream URL: what one connection pool serves.
struct UpstreamOrigin: Hashable, Sendable {
    let tls: Bool
    let host: String
    let port: Int

    /// `Host` header value: IPv6 literals in brackets, the port only when it is not the default.
    var hostHeader: String {
        let name = host.contains(":") ? "[\(host)]" : host
        return port == (tls ? 443 : 80) ? name : "\(name):\(port)"
    }

    /// SNI takes names only; for an address the certificate is checked against the address.
    var serverName: String? {
        host.contains(":") || host.split(separator: ".").allSatisfy({ Int($0) != nil }) ? nil : host
    }
}

/// Keep-alive HTTP/1.1 connections to one upstream origin, at most `maxConnections` of them.
///
/// Idle connections are kept per event loop and a caller takes one on its own loop, so the
/// request, the upstream's answer and the reply to the client run on one thread without a hop.
/// When every connection is busy, callers queue (first come, first served) until one is free
/// or their deadline passes.
final class UpstreamConnectionPool: Sendable {
    struct Settings: Sendable {
        var connectTimeout: TimeAmount
        var maxConnections: Int
        var maxResponseBytes: Int
        /// A connection idle longer than this is closed instead of reused, well before a
        /// server's own keep-alive timeout (aiohttp: 75 s, nginx: 75 s) closes it under us.
        var maxIdle: TimeAmount = .seconds(30)
    }

    final class Connection: Sendable {
        let channel: any Channel
        let idleSince: Mutex<NIODeadline>
        init(_ channel: any Channel) {
            self.channel = channel
            self.idleSince = Mutex(.now())
        }
        var loopID: ObjectIdentifier { ObjectIdentifier(channel.eventLoop) }
    }

    private struct Waiter {
        let id: UInt64
        let loop: any EventLoop
        let continuation: CheckedContinuation<Connection, any Error>
    }

    private struct State {
        var idle: [ObjectIdentifier: [Connection]] = [:]
        /// Connections open or being opened: never more than `maxConnections`.
        var open = 0
        var waiters: [Waiter] = []
        var nextWaiterID: UInt64 = 0
        var closed = false
    }

    private enum Lease {
        case use(Connection)
        case connect
        case wait
        case refuse
    }

    let origin: UpstreamOrigin
    private let settings: Settings
    private let tls: NIOSSLContext?
    private let group: any EventLoopGroup
    private let state = Mutex(State())

    init(origin: UpstreamOrigin, settings: Settings, tls: NIOSSLContext?,
         group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) {
        self.origin = origin
        self.settings = settings
        self.tls = tls
        self.group = group
    }

    /// One POST, answered whole; `deadline` bounds waiting for a connection, connecting and the exchange.
    func post(path: String, headers: HTTPHeaders, body: ByteBuffer, deadline: NIODeadline) async throws -> UpstreamHTTPResponse {
        let loop = MultiThreadedEventLoopGroup.currentEventLoop ?? group.any()
        let connection = try await lease(on: loop, deadline: deadline)
        var head = HTTPRequestHead(version: .http1_1, method: .POST, uri: path, headers: headers)
        head.headers.replaceOrAdd(name: "Host", value: origin.hostHeader)
        head.headers.replaceOrAdd(name: "Content-Length", value: String(body.readableBytes))
        let promise = connection.channel.eventLoop.makePromise(of: UpstreamHTTPResponse.self)
        let exchange = UpstreamExchange(head: head, body: body, deadline: deadline,
                                        maxResponseBytes: settings.maxResponseBytes, promise: promise)
        let written = connection.channel.eventLoop.makePromise(of: Void.self)
        // A write that never reaches the handler (the channel closed meanwhile) still ends the exchange.
        written.futureResult.whenFailure { promise.fail($0) }
        connection.channel.writeAndFlush(exchange, promise: written)
        do {
            let response = try await promise.futureResult.get()
            release(connection, reusable: response.keepAlive)
            return response
        } catch {
            release(connection, reusable: false)
            throw error
        }
    }

    /// Closes idle connections and refuses new requests; those in flight finish.
    func shutdown() async {
        let (idle, waiters) = state.withLock { s in
            s.closed = true
            defer { s.idle = [:]; s.waiters = [] }
            return (s.idle.values.flatMap { $0 }, s.waiters)
        }
        for w in waiters { w.continuation.resume(throwing: UpstreamHTTPError.shutDown) }
        for c in idle { try? await c.channel.close() }
    }

    // MARK: Leasing

    private func lease(on loop: any EventLoop, deadline: NIODeadline) async throws -> Connection {
        let now = NIODeadline.now()
        var stale: [Connection] = []
        let decision: Lease = state.withLock { s in
            if s.closed { return .refuse }
            if let c = Self.takeIdle(&s, loop: ObjectIdentifier(loop), now: now, maxIdle: settings.maxIdle, stale: &stale) {
                return .use(c)
            }
            if s.open < settings.maxConnections {
                s.open += 1
                return .connect
            }
            for key in s.idle.keys {
                if let c = Self.takeIdle(&s, loop: key, now: now, maxIdle: settings.maxIdle, stale: &stale) { return .use(c) }
            }
            return .wait
        }
        for c in stale { c.channel.close(promise: nil) }
        switch decision {
        case .use(let c): return c
        case .refuse: throw UpstreamHTTPError.shutDown
        case .connect: return try await connect(on: loop, deadline: deadline)
        case .wait: return try await waitForConnection(on: loop, deadline: deadline)
        }
    }

    private static func takeIdle(_ s: inout State, loop: ObjectIdentifier, now: NIODeadline, maxIdle: TimeAmount,
                                 stale: inout [Connection]) -> Connection? {
        while let c = s.idle[loop]?.popLast() {
            if c.channel.isActive && c.idleSince.withLock({ $0 }) + maxIdle > now { return c }
            stale.append(c)
        }
        return nil
    }

    private func waitForConnection(on loop: any EventLoop, deadline: NIODeadline) async throws -> Connection {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Connection, any Error>) in
            let id: UInt64 = state.withLock { s in
                s.nextWaiterID += 1
                s.waiters.append(Waiter(id: s.nextWaiterID, loop: loop, continuation: continuation))
                return s.nextWaiterID
            }
            loop.scheduleTask(deadline: deadline) { [self] in
                let expired: Waiter? = state.withLock { s in
                    guard let i = s.waiters.firstIndex(where: { $0.id == id }) else { return nil }
                    return s.waiters.remove(at: i)
                }
                expired?.continuation.resume(throwing: UpstreamHTTPError.deadlineExceeded)
            }
        }
    }

    /// Returns a connection after an exchange: to the first waiter, or to its loop's idle list.
    private func release(_ connection: Connection, reusable: Bool) {
        guard reusable, connection.channel.isActive else {
            // Closing frees the slot (see `connect`), which a waiter then gets.
            connection.channel.close(promise: nil)
            return
        }
        connection.idleSince.withLock { $0 = .now() }
        let waiter: Waiter? = state.withLock { s in
            if s.closed { return nil }
            if !s.waiters.isEmpty { return s.waiters.removeFirst() }
            s.idle[connection.loopID, default: []].append(connection)
            return nil
        }
        if let waiter {
            waiter.continuation.resume(returning: connection)
        } else if state.withLock({ $0.closed }) {
            connection.channel.close(promise: nil)
        }
    }

    /// A connection's slot is free again (it closed, or never opened): a waiter may open one.
    private func slotFreed(_ connection: Connection?) {
        let waiter: Waiter? = state.withLock { s in
            if let connection, var list = s.idle[connection.loopID],
               let i = list.firstIndex(where: { $0 === connection }) {
                list.remove(at: i)
                s.idle[connection.loopID] = list
            }
            s.open -= 1
            guard !s.closed, !s.waiters.isEmpty else { return nil }
            s.open += 1
            return s.waiters.removeFirst()
        }
        guard let waiter else { return }
        Task {
            do {
                waiter.continuation.resume(returning: try await connect(on: waiter.loop, deadline: .now() + settings.connectTimeout))
            } catch {
                waiter.continuation.resume(throwing: error)
            }
        }
    }

    // MARK: Connecting

    /// Opens a connection on `loop` in a slot already counted in `open`.
    private func connect(on loop: any EventLoop, deadline: NIODeadline) async throws -> Connection {
        let timeout = min(settings.connectTimeout, max(deadline - .now(), .milliseconds(1)))
        let tls = self.tls
        let serverName = origin.serverName
        let bootstrap = ClientBootstrap(group: loop)
            .connectTimeout(timeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let pipeline = channel.pipeline.syncOperations
                    if let tls { try pipeline.addHandler(NIOSSLClientHandler(context: tls, serverHostname: serverName)) }
                    try pipeline.addHTTPClientHandlers()
                    try pipeline.addHandler(UpstreamExchangeHandler())
                }
            }
        let channel: any Channel
        do {
            channel = try await bootstrap.connect(host: origin.host, port: origin.port).get()
        } catch {
            slotFreed(nil)
            throw Self.connectError(error)
        }
        let connection = Connection(channel)
        channel.closeFuture.whenComplete { [self] _ in slotFreed(connection) }
        return connection
    }

    static func connectError(_ error: any Error) -> UpstreamHTTPError {
        if let e = error as? ChannelError, case .connectTimeout = e { return .connectTimeout }
        if let e = error as? NIOConnectionError {
            if e.connectionErrors.contains(where: { ($0.error as? IOError)?.errnoCode == ECONNREFUSED }) {
                return .connectionRefused
            }
            if e.connectionErrors.isEmpty, e.dnsAAAAError == nil, e.dnsAError == nil { return .connectTimeout }
        }
        if let e = error as? IOError, e.errnoCode == ECONNREFUSED { return .connectionRefused }
        return .connectFailed
    }
}
