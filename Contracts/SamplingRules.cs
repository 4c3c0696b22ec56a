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

    /// <summary>The penalties and min_p, by OpenAI's and vLLM's ranges; the message starts with the field's name.</summary>
    public static void CheckPenalties(double presencePenalty, double frequencyPenalty, double repetitionPenalty, double minP)
    {
        if (!(presencePenalty >= -2 && presencePenalty <= 2))
            throw new InvalidOptionsException($"presence_penalty = {presencePenalty} must lie in [-2, 2]");
        if (!(frequencyPenalty >= -2 && frequencyPenalty <= 2))
            throw new InvalidOptionsException($"frequency_penalty = {frequencyPenalty} must lie in [-2, 2]");
        if (!(repetitionPenalty > 0 && double.IsFinite(repetitionPenalty)))
            throw new InvalidOptionsException($"repetition_penalty = {repetitionPenalty} must be a finite number > 0 (1 is none)");
        if (!(minP >= 0 && minP <= 1)) throw new InvalidOptionsException($"min_p = {minP} must lie in [0, 1]");
    }

    /// <summary>A logit_bias token must be one of the model's.</summary>
    public static void CheckLogitBiasToken(int token, int vocabSize)
    {
        if (token >= vocabSize) throw new InvalidOptionsException($"logit_bias names token {token}, outside the model's vocabulary of {vocabSize}");
    }

    /// <summary>OpenAI's logit_bias: a token id ≥ 0 and a bias in [-100, 100].</summary>
    public static void CheckLogitBias(int token, double bias)
    {
        if (token < 0) throw new InvalidOptionsException($"logit_bias names token {token}: token ids are ≥ 0");
        if (!(bias >= -100 && bias <= 100)) throw new InvalidOptionsException($"logit_bias = {bias} for token {token} must lie in [-100, 100]");
    }
}
