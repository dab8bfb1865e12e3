import CSC
import Crypto
import Foundation
import Synchronization

/// Checks `Authorization: Bearer <secret>` on the admin API against the operators' slow hashes.
/// A secret that verified once is remembered by its SHA-256, so a dashboard polling every few
/// seconds does not pay scrypt each time; the memory is per process and lost on restart.
public final class AdminAuthentication: Sendable {
    private let operators: [AdminConfiguration]
    private let verified = Mutex<[Data: String]>([:])

    public init(operators: [AdminConfiguration]) { self.operators = operators }

    /// The operator's id, or an error that never repeats what was sent.
    public func authenticate(authorization: String?) throws(CSCError) -> String {
        guard let authorization, authorization.lowercased().hasPrefix("bearer "),
              case let secret = String(authorization.dropFirst(7)).trimmingCharacters(in: .whitespaces), !secret.isEmpty else {
            throw CSCError(status: 401, error: "invalid_request",
                           description: "The admin API needs an operator secret as 'Authorization: Bearer …'",
                           headers: ["WWW-Authenticate": "Bearer realm=\"cscgate-admin\""])
        }
        let digest = Data(SHA256.hash(data: Data(secret.utf8)))
        if let id = verified.withLock({ $0[digest] }) { return id }
        for op in operators where op.secretHash.verify(secret) {
            verified.withLock { cache in
                if cache.count > 1024 { cache.removeAll() }
                cache[digest] = op.id
            }
            return op.id
        }
        throw CSCError(status: 401, error: "invalid_token", description: "The operator secret is not valid",
                       headers: ["WWW-Authenticate": "Bearer realm=\"cscgate-admin\", error=\"invalid_token\""])
    }
}
