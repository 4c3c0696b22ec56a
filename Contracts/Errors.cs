namespace TauCluster.Contracts;

/// <summary>
/// Base of every error TauCluster reports for bad input; the message always names what was wrong. These cross Orleans
/// as themselves (see TauClientHosting.AddTauErrors), so a client catches the same types a grain throws.
/// </summary>
public class TauException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>A model directory, config.json or safetensors file that cannot be used as it is.</summary>
public sealed class ModelFormatException(string message, Exception? inner = null) : TauException(message, inner);

/// <summary>A Laplacian or manifold that is not square, finite, symmetric or of the right dimension.</summary>
public sealed class LaplacianException(string message, Exception? inner = null) : TauException(message, inner);

/// <summary>A NumPy .npy file that is not a little-endian float32/float64 2-D C-order array, or is cut short.</summary>
public sealed class NpyFormatException(string message, Exception? inner = null) : TauException(message, inner);

/// <summary>Items or settings from which no manifold can be built: too few items or features, k ≥ D, non-finite values.</summary>
public sealed class ManifoldBuildException(string message) : TauException(message);

/// <summary>Sampling or generation options outside their valid range.</summary>
public sealed class InvalidOptionsException(string message) : TauException(message);

/// <summary>A token id outside [0, vocab_size).</summary>
public sealed class TokenOutOfRangeException(int token, int vocabSize)
    : TauException($"token id {token} is outside the vocabulary [0, {vocabSize})")
{
    public int Token { get; } = token;
    public int VocabSize { get; } = vocabSize;
}

/// <summary>A session that would grow past the model's sequence_len; <paramref name="what"/> says what the tokens are.</summary>
public sealed class ContextLengthExceededException(long requested, int limit, string? what = null)
    : TauException($"{what ?? $"{requested} tokens"} exceed the model's context of {limit} (sequence_len)")
{
    public int Limit { get; } = limit;
}

/// <summary>An unknown model, domain or session name.</summary>
public sealed class UnknownNameException(string kind, string name, string? hint = null)
    : TauException($"unknown {kind} '{name}'{(hint is null ? "" : $": {hint}")}")
{
    public string Kind { get; } = kind;
    public string Name { get; } = name;
}

/// <summary>
/// A request that contradicts the session as it stands, though each of its options is valid: the session runs another
/// model or domain, an append expected another length (a concurrent append came first), or a fork's target already
/// exists. Sent again unchanged it fails again; HTTP answers 409.
/// </summary>
public sealed class SessionConflictException(string message) : TauException(message);

/// <summary>
/// The device has no room left for a session's cache: every page of its cache pool is held by live sessions. Nothing of
/// the session changed; the request can be sent again once others end (HTTP answers 503).
/// </summary>
public sealed class DeviceMemoryExhaustedException(string message) : TauException(message);
