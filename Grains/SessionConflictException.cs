using TauCluster.Engine;

namespace TauCluster.Grains;

/// <summary>
/// A request that contradicts the session as it stands, though each of its options is valid: the session runs another
/// model or domain, an append expected another length (a concurrent append came first), or a fork's target already
/// exists. Sent again unchanged it fails again; HTTP answers 409.
/// </summary>
public sealed class SessionConflictException(string message) : TauException(message);
