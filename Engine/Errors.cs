namespace TauCluster.Engine;

/// <summary>Base of every error the engine reports for bad input; the message always names what was wrong.</summary>
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

/// <summary>A session that would grow past the model's sequence_len.</summary>
public sealed class ContextLengthExceededException(int requested, int limit)
    : TauException($"{requested} tokens exceed the model's context of {limit} (sequence_len)")
{
    public int Limit { get; } = limit;
}
