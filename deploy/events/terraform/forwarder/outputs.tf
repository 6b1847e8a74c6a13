output "rule_arn" {
  description = "The forwarding rule"
  value       = aws_cloudwatch_event_rule.forward.arn
}
