namespace TauCluster.Contracts;

/// <summary>The ranges of the sampling options, checked where a request arrives and again where the sampler is made.</summary>
public static class SamplingRules
{
    /// <summary>Throws an <see cref="InvalidOptionsException"/> whose message starts with the name of the field out of range.</summary>
    public static void Check(double temperature, int topK, double topP)
    {
        if (!double.IsFinite(temperature) || temperature < 0)
            throw new InvalidOptionsException($"temperature = {temperature} must be a finite number ≥ 0");
        if (topK < 0) throw new InvalidOptionsException($"top_k = {topK} must be ≥ 0 (0 keeps every token)");
        if (!(topP > 0 && topP <= 1)) throw new InvalidOptionsException($"top_p = {topP} must lie in (0, 1]");
    }
}
